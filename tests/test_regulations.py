"""GDPR / CCPA regulations over HTTP: deletion follows the identity graph; suppression blocks ingestion."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select

from cdp.auth.service import create_source, create_token
from cdp.events.attribution import attribute_pending
from cdp.events.ingest import IngestConfig, prepare_batch, store_prepared
from cdp.events.schemas import Envelope
from cdp.identity.service import find_profile
from cdp.privacy.regulations import SUPPRESSIONS_TTL, claim_and_run, create_regulation
from cdp.setup import prepare_store
from cdp.store.tables import events, profile_traits, trait_changes
from tests.conftest import LiveServer


def admin(server: LiveServer) -> dict[str, str]:
    return {"authorization": f"Bearer {server.admin_token}"}


def send(server: LiveServer, *messages) -> None:  # type: ignore[no-untyped-def]
    answer = httpx.post(f"{server.url}/v1/batch", json={"batch": list(messages)}, auth=(server.write_key, ""))
    assert answer.status_code == 200, answer.text
    server.wait_attributed()


def regulate(server: LiveServer, kind: str, subject_type: str, ids: list[str]) -> dict:  # type: ignore[type-arg]
    answer = httpx.post(f"{server.url}/v1/regulations", headers=admin(server),
                        json={"regulationType": kind, "subjectType": subject_type, "subjectIds": ids})
    assert answer.status_code == 200, answer.text
    regulate_id = answer.json()["data"]["regulateId"]
    for _ in range(100):
        status = httpx.get(f"{server.url}/v1/regulations/{regulate_id}", headers=admin(server)).json()["data"]["regulation"]
        if status["status"] in ("FINISHED", "FAILED"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"regulation still {status['status']}")


def traits(server: LiveServer, identifier: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/profiles/{identifier}/traits", headers=admin(server))


def test_delete_and_suppress_follow_the_identity_graph(live_server: LiveServer) -> None:
    ann, other = f"ann-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    send(live_server,
         {"type": "track", "anonymousId": f"{ann}-phone", "event": "Browsed"},
         {"type": "identify", "anonymousId": f"{ann}-phone", "userId": ann, "traits": {"email": f"{ann}@x.io", "plan": "pro"}},
         {"type": "identify", "anonymousId": f"{ann}-laptop", "userId": ann},
         {"type": "group", "userId": ann, "groupId": f"{ann}-co", "traits": {"name": "Co"}},
         {"type": "track", "userId": other, "event": "Stays"})
    assert traits(live_server, f"user_id:{ann}").status_code == 200

    done = regulate(live_server, "SUPPRESS_WITH_DELETE", "EMAIL", [f"{ann}@X.io"])
    assert done["status"] == "FINISHED", done
    assert done["counts"]["events"] == 4 and done["counts"]["profiles"] >= 1
    for identifier in (f"user_id:{ann}", f"anonymous_id:{ann}-phone", f"anonymous_id:{ann}-laptop", f"email:{ann}@x.io"):
        assert traits(live_server, identifier).status_code == 404, identifier
    engine = live_server.engine()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events).where(
            (events.c.user_id == ann) | events.c.anonymous_id.like(f"{ann}-%"))).scalar() == 0
        assert conn.execute(select(func.count()).select_from(events).where(events.c.user_id == other)).scalar() == 1
    # The account stays (it is not a person) but Ann is no longer a member of it.
    assert traits(live_server, f"group_id:{ann}-co?collection=accounts").status_code in (200, 404)

    # Suppressed: accepted with 200 from any of her linked ids, never stored (once every worker
    # has seen that the store now has suppressions).
    time.sleep(SUPPRESSIONS_TTL + 0.1)
    with engine.connect() as conn:
        changes_before = conn.execute(select(func.count()).select_from(trait_changes)).scalar()
    send(live_server, {"type": "track", "anonymousId": f"{ann}-laptop", "event": "Came back"},
         {"type": "identify", "userId": ann, "traits": {"plan": "free"}})
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events).where(events.c.event == "Came back")).scalar() == 0
        assert conn.execute(select(func.count()).select_from(trait_changes)).scalar() == changes_before

    assert regulate(live_server, "UNSUPPRESS", "EMAIL", [f"{ann}@x.io"])["counts"]["unsuppressed"] == 4
    send(live_server, {"type": "track", "anonymousId": f"{ann}-laptop", "event": "Came back"})
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events).where(events.c.event == "Came back")).scalar() == 1
    engine.dispose()


def test_delete_only_does_not_suppress(live_server: LiveServer) -> None:
    user = f"d-{uuid.uuid4().hex[:6]}"
    send(live_server, {"type": "identify", "userId": user, "traits": {"a": 1}})
    assert regulate(live_server, "DELETE_ONLY", "USER_ID", [user])["counts"]["traits"] == 1
    assert traits(live_server, f"user_id:{user}").status_code == 404
    send(live_server, {"type": "identify", "userId": user, "traits": {"a": 2}})
    assert traits(live_server, f"user_id:{user}").json()["traits"] == {"a": 2}
    engine = live_server.engine()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(profile_traits).where(
            profile_traits.c.name == "a")).scalar() >= 1
    engine.dispose()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"regulationType": "FORGET", "subjectType": "USER_ID", "subjectIds": ["u"]}, "invalid_request"),
        ({"regulationType": "DELETE_ONLY", "subjectType": "PHONE", "subjectIds": ["u"]}, "invalid_request"),
        ({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": []}, "invalid_request"),
        ({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["u"] * 5001}, "invalid_request"),
        ({"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": [""]}, "invalid_request"),
    ],
)
def test_bad_regulations_are_400(live_server: LiveServer, body, code) -> None:  # type: ignore[no-untyped-def]
    answer = httpx.post(f"{live_server.url}/v1/regulations", headers=admin(live_server), json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == code


def test_regulations_need_the_scope(live_server: LiveServer) -> None:
    body = {"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["u"]}
    assert httpx.post(f"{live_server.url}/v1/regulations", json=body).status_code == 401
    engine = live_server.engine()
    with engine.begin() as conn:
        _, reader = create_token(conn, name="bi", scopes=["profiles:read"], now=datetime.now(UTC))
        _, writer = create_token(conn, name="dpo", scopes=["regulations:write"], now=datetime.now(UTC))
    engine.dispose()
    assert httpx.post(f"{live_server.url}/v1/regulations", json=body,
                      headers={"authorization": f"Bearer {reader}"}).status_code == 403
    assert httpx.post(f"{live_server.url}/v1/regulations", json=body,
                      headers={"authorization": f"Bearer {writer}"}).status_code == 200
    assert httpx.get(f"{live_server.url}/v1/regulations/nope", headers=admin(live_server)).status_code == 404


def test_delete_reaches_devices_only_pending_events_tie_to_the_subject(settings) -> None:  # type: ignore[no-untyped-def]
    """An identify still waiting for attribution is the only link from the user to this device."""
    engine = prepare_store(settings)
    config = IngestConfig.from_settings(settings)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        source_id = create_source(conn, name="app", write_key="k", now=now)[0].id
        envelope = Envelope(received_at=now)
        store_prepared(conn, source_id=source_id, envelope=envelope, config=config, defer_attribution=True,
                       prepared=prepare_batch([
                           {"type": "identify", "userId": "ann", "anonymousId": "ann-tablet", "messageId": "m1"},
                           {"type": "track", "anonymousId": "ann-tablet", "event": "Browsed", "messageId": "m2"},
                           {"type": "track", "anonymousId": "someone-else", "event": "Browsed", "messageId": "m3"},
                       ], envelope, config=config))
        regulation_id = create_regulation(conn, regulation_type="DELETE_ONLY", subject_type="USER_ID",
                                          subject_ids=["ann"], now=now)
    assert claim_and_run(engine, regulation_id).counts["events"] == 2
    with engine.begin() as conn:
        attribute_pending(conn, config=config, now=now, limit=100)
        assert conn.execute(select(events.c.message_id)).scalars().all() == ["m3"]
        assert find_profile(conn, type="anonymous_id", value="ann-tablet") is None
    engine.dispose()
