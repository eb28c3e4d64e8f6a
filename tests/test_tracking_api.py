"""The Tracking API through a live ``cdp serve`` (two workers) on SQLite and on PostgreSQL."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from cdp.store.tables import events, quarantine
from tests.conftest import LiveServer


@pytest.fixture(scope="module")
def client(live_server: LiveServer):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=live_server.url, auth=(live_server.write_key, ""), timeout=30) as client:
        yield client


def stored(server: LiveServer, message_id: str):  # type: ignore[no-untyped-def]
    engine = server.engine()
    with engine.connect() as conn:
        rows = conn.execute(select(events).where(events.c.message_id == message_id)).all()
    engine.dispose()
    return rows


def mid() -> str:
    return str(uuid.uuid4())


@pytest.mark.parametrize(
    ("path", "body", "kind"),
    [
        ("track", {"userId": "u1", "event": "Signed Up"}, "track"),
        ("t", {"userId": "u1", "event": "Signed Up"}, "track"),
        ("identify", {"userId": "u1", "traits": {"plan": "pro"}}, "identify"),
        ("i", {"anonymousId": "a1", "traits": {}}, "identify"),
        ("page", {"anonymousId": "a1", "name": "Home"}, "page"),
        ("p", {"anonymousId": "a1"}, "page"),
        ("screen", {"userId": "u1", "name": "Cart"}, "screen"),
        ("s", {"userId": "u1", "name": "Cart"}, "screen"),
        ("group", {"userId": "u1", "groupId": "g1"}, "group"),
        ("g", {"userId": "u1", "groupId": "g1"}, "group"),
        ("alias", {"userId": "u1", "previousId": "a1"}, "alias"),
        ("a", {"userId": "u1", "previousId": "a1"}, "alias"),
    ],
)
def test_every_single_call_path_stores_its_message(client, live_server, path, body, kind) -> None:  # type: ignore[no-untyped-def]
    message_id = mid()
    answer = client.post(f"/v1/{path}", json={**body, "messageId": message_id})
    assert answer.status_code == 200 and answer.json() == {"success": True}
    [row] = stored(live_server, message_id)
    assert row.type == kind


def test_analytics_js_style_text_plain_with_write_key_in_body(live_server) -> None:  # type: ignore[no-untyped-def]
    message_id = mid()
    body = orjson.dumps({"writeKey": live_server.write_key, "batch": [
        {"type": "page", "anonymousId": "web-1", "messageId": message_id, "name": "Pricing"}]})
    answer = httpx.post(f"{live_server.url}/v1/b", content=body, headers={"content-type": "text/plain"})
    assert answer.status_code == 200, answer.text
    [row] = stored(live_server, message_id)
    assert "writeKey" not in row.payload


def test_rudderstack_node_style_gzip_form_urlencoded_batch(live_server) -> None:  # type: ignore[no-untyped-def]
    ids = [mid() for _ in range(20)]
    sent_at = datetime.now(UTC) + timedelta(hours=2)  # the client's clock runs two hours fast
    created = sent_at - timedelta(seconds=30)
    batch = [{"type": "track", "userId": "u9", "event": "Product Viewed", "messageId": i, "channel": "server",
              "_metadata": {"nodeVersion": "20.0.0"}, "originalTimestamp": created.isoformat().replace("+00:00", "Z"),
              "sentAt": sent_at.isoformat().replace("+00:00", "Z")} for i in ids]
    body = gzip.compress(orjson.dumps({"batch": batch, "timestamp": "x", "sentAt": batch[0]["sentAt"]}))
    answer = httpx.post(
        f"{live_server.url}/v1/batch", content=body, auth=(live_server.write_key, ""),
        headers={"content-type": "application/x-www-form-urlencoded", "content-encoding": "gzip"},
    )
    assert answer.status_code == 200, answer.text
    row = stored(live_server, ids[0])[0]
    # Skew-corrected: 30 s before it was received, not two hours in the future.
    assert abs((row.received_at - row.timestamp) - timedelta(seconds=30)) < timedelta(seconds=1)
    assert row.payload["_metadata"] == {"nodeVersion": "20.0.0"} and row.payload["channel"] == "server"
    assert all(len(stored(live_server, i)) == 1 for i in ids[1:3])


def test_sdk_retry_with_same_message_ids_is_stored_once(client, live_server) -> None:  # type: ignore[no-untyped-def]
    ids = [mid() for _ in range(5)]
    batch = [{"type": "track", "userId": "u1", "event": "E", "messageId": i} for i in ids]
    for sent_at in ("2026-01-01T00:00:00Z", "2026-01-01T00:00:03Z"):
        assert client.post("/v1/batch", json={"batch": batch, "sentAt": sent_at}).status_code == 200
    assert [len(stored(live_server, i)) for i in ids] == [1] * 5


def test_batch_with_invalid_messages_stores_valid_ones_and_quarantines_the_rest(client, live_server) -> None:  # type: ignore[no-untyped-def]
    good, bad = mid(), mid()
    answer = client.post("/v1/batch", json={"batch": [
        {"type": "track", "userId": "u1", "event": "Ok", "messageId": good},
        {"type": "track", "userId": "u1", "messageId": bad},
        {"type": "track", "event": "No one", "messageId": mid()},
        {"type": "track", "userId": "u1", "event": "Big", "messageId": mid(), "properties": {"x": "y" * 40_000}},
    ]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is True and body["accepted"] == 1 and body["quarantined"] == 3
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (1, "missing_event"), (2, "no_user_anon_id"), (3, "message_too_large")]
    assert len(stored(live_server, good)) == 1
    engine = live_server.engine()
    with engine.connect() as conn:
        kept = conn.execute(select(quarantine.c.code, quarantine.c.reason).where(quarantine.c.message_id == bad)).one()
    engine.dispose()
    assert kept.code == "missing_event"


def test_envelope_context_and_integrations_merge_into_each_message(client, live_server) -> None:  # type: ignore[no-untyped-def]
    message_id = mid()
    client.post("/v1/batch", json={
        "batch": [{"type": "identify", "userId": "u1", "messageId": message_id, "context": {"locale": "fr"}}],
        "context": {"ip": "203.0.113.9", "locale": "en"}, "integrations": {"All": True}})
    payload = stored(live_server, message_id)[0].payload
    assert payload["context"] == {"ip": "203.0.113.9", "locale": "fr"}
    assert payload["integrations"] == {"All": True}


@pytest.mark.parametrize(
    ("path", "auth", "status", "code"),
    [("/v1/track", None, 401, "authentication_error"), ("/v1/track", ("nope", ""), 401, "authentication_error")],
)
def test_unknown_or_missing_write_key_is_401(live_server, path, auth, status, code) -> None:  # type: ignore[no-untyped-def]
    answer = httpx.post(f"{live_server.url}{path}", json={"userId": "u", "event": "E"}, auth=auth)
    assert answer.status_code == status
    assert answer.json() == {"success": False, "code": code, "message": answer.json()["message"]}


@pytest.mark.parametrize(
    ("path", "content", "headers", "status", "code"),
    [
        ("/v1/batch", b"{not json", {}, 400, "invalid_json"),
        ("/v1/batch", b"", {}, 400, "invalid_json"),
        ("/v1/batch", b'{"batch": 3}', {}, 400, "invalid_batch"),
        ("/v1/batch", b'[1]', {}, 400, "invalid_batch"),
        ("/v1/batch", b'{"batch": [], "sentAt": "soon"}', {}, 400, "invalid_timestamp"),
        ("/v1/track", b'{"userId": "u"}', {}, 400, "missing_event"),
        ("/v1/identify", b'{"traits": {}}', {}, 400, "no_user_anon_id"),
        ("/v1/track", b'{"userId": "u", "event": "E"}', {"content-encoding": "gzip"}, 400, "invalid_encoding"),
        ("/v1/track", b'{"userId": "u", "event": "E"}', {"content-encoding": "br"}, 400, "unsupported_encoding"),
    ],
)
def test_client_mistakes_get_a_clear_4xx(client, path, content, headers, status, code) -> None:  # type: ignore[no-untyped-def]
    answer = client.post(path, content=content, headers=headers)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is False and body["code"] == code and body["message"]


def test_size_limits_answer_413(client) -> None:  # type: ignore[no-untyped-def]
    one = {"type": "track", "userId": "u", "event": "E"}
    too_many = client.post("/v1/batch", json={"batch": [one] * 2501})
    assert too_many.status_code == 413 and too_many.json()["code"] == "payload_too_large"
    too_big = client.post("/v1/batch", json={"batch": [{**one, "properties": {"x": "y" * 30_000}}] * 20})
    assert too_big.status_code == 413
    big_message = client.post("/v1/track", json={**one, "properties": {"x": "y" * 40_000}})
    assert big_message.status_code == 413 and big_message.json()["code"] == "message_too_large"
    # A gzip bomb: 100 KB on the wire, 100 MB inflated; refused without inflating it all.
    bomb = gzip.compress(b'{"batch": [' + b" " * 100_000_000 + b"]}")
    answer = client.post("/v1/batch", content=bomb, headers={"content-encoding": "gzip"})
    assert answer.status_code == 413


def test_limits_are_inclusive(client, live_server) -> None:  # type: ignore[no-untyped-def]
    batch = [{"type": "track", "userId": "u", "event": "E", "messageId": mid()} for _ in range(2500)]
    answer = client.post("/v1/batch", content=gzip.compress(orjson.dumps({"batch": batch})),
                         headers={"content-encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    assert len(stored(live_server, batch[-1]["messageId"])) == 1


def test_long_sdk_message_ids_and_numeric_user_ids_land(client, live_server) -> None:  # type: ignore[no-untyped-def]
    message_id = f"node-next-1732900000000-{uuid.uuid4()}"
    assert client.post("/v1/t", json={"userId": 12345, "event": "E", "messageId": message_id}).status_code == 200
    assert stored(live_server, message_id)[0].user_id == "12345"


def test_openapi_documents_the_tracking_api(live_server) -> None:  # type: ignore[no-untyped-def]
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    for path in ("/v1/batch", "/v1/b", "/v1/track", "/v1/t", "/v1/import"):
        assert "post" in spec["paths"][path]
    assert "SpecMessage" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["writeKeyBasic"]["scheme"] == "basic"


def test_the_answer_comes_after_the_commit(client, live_server) -> None:  # type: ignore[no-untyped-def]
    ids = [mid() for _ in range(100)]
    client.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": i} for i in ids]})
    engine = live_server.engine()
    with engine.connect() as conn:  # a separate connection sees all 100 as soon as the 200 arrived
        n = conn.execute(select(func.count()).select_from(events).where(events.c.message_id.in_(ids))).scalar()
    engine.dispose()
    assert n == 100
