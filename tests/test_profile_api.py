"""The Profile API through a live ``cdp serve``, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import insert

from cdp.auth.service import create_token
from cdp.store.tables import profile_traits
from tests.conftest import LiveServer

T0 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def person(live_server: LiveServer) -> str:
    """A person seen on a phone, then logged in; 25 tracks; returns their user id."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    batch = [{"type": "page", "anonymousId": f"{user}-phone", "name": "Home", "timestamp": T0.isoformat()}]
    batch.append({"type": "identify", "anonymousId": f"{user}-phone", "userId": user,
                  "traits": {"email": f"{user}@Example.com", "plan": "pro", "address": {"city": "Oslo"}},
                  "timestamp": (T0 + timedelta(minutes=1)).isoformat()})
    batch += [{"type": "track", "userId": user, "event": "Product Viewed" if n % 2 else "Order Completed",
               "properties": {"n": n}, "timestamp": (T0 + timedelta(hours=n + 1)).isoformat()} for n in range(25)]
    batch.append({"type": "group", "userId": user, "groupId": f"{user}-co", "traits": {"name": "Co"},
                  "timestamp": (T0 + timedelta(days=2)).isoformat()})
    answer = httpx.post(f"{live_server.url}/v1/batch", json={"batch": batch}, auth=(live_server.write_key, ""))
    assert answer.status_code == 200
    live_server.wait_attributed()
    return user


def get(server: LiveServer, path: str, token: str | None = None, **params):  # type: ignore[no-untyped-def]
    headers = {"authorization": f"Bearer {token or server.admin_token}"}
    return httpx.get(f"{server.url}{path}", headers=headers, params=params or None)


def test_traits_short_and_long_form_with_verbose_provenance(live_server, person) -> None:  # type: ignore[no-untyped-def]
    short = get(live_server, f"/v1/profiles/user_id:{person}/traits")
    assert short.status_code == 200
    body = short.json()
    assert body["traits"] == {"address": {"city": "Oslo"}, "email": f"{person}@Example.com", "plan": "pro"}
    assert body["cursor"]["has_more"] is False
    long = get(live_server, f"/v1/spaces/main/collections/users/profiles/user_id:{person}/traits", verbose="true",
               include="plan")
    assert long.json()["traits"]["plan"]["value"] == "pro"
    assert long.json()["traits"]["plan"]["class"] == "identify"
    assert long.json()["traits"]["plan"]["updated_at"].startswith("2026-02-01T00:01:00")
    assert set(long.json()["traits"]) == {"plan"}


def test_any_identifier_finds_the_same_profile(live_server, person) -> None:  # type: ignore[no-untyped-def]
    for identifier in (f"user_id:{person}", f"anonymous_id:{person}-phone", f"email:{quote(person + '@example.com')}"):
        assert get(live_server, f"/v1/profiles/{identifier}/traits").json()["traits"]["plan"] == "pro"
    ids = get(live_server, f"/v1/profiles/user_id:{person}/external_ids").json()["data"]
    assert {(d["type"], d["id"]) for d in ids} == {
        ("anonymous_id", f"{person}-phone"), ("user_id", person), ("email", f"{person}@example.com")}
    assert all(d["source_id"] and d["created_at"] for d in ids)
    profile_id = get(live_server, f"/v1/profiles/user_id:{person}/metadata").json()
    assert profile_id["metadata"]["first_message_id"]


def test_events_newest_first_with_cursor_pagination_and_filters(live_server, person) -> None:  # type: ignore[no-untyped-def]
    seen, cursor = [], None
    while True:
        page = get(live_server, f"/v1/profiles/user_id:{person}/events", limit=10, **({"next": cursor} if cursor else {}))
        assert page.status_code == 200
        body = page.json()
        seen += body["data"]
        if not body["cursor"]["has_more"]:
            break
        cursor = body["cursor"]["next"]
    assert len(seen) == 28 and len({e["message_id"] for e in seen}) == 28
    times = [e["timestamp"] for e in seen]
    assert times == sorted(times, reverse=True)
    assert seen[0]["type"] == "group" and seen[-1]["type"] == "page" and seen[-1]["name"] == "Home"
    orders = get(live_server, f"/v1/profiles/user_id:{person}/events", include="Order Completed", limit=100).json()
    assert len(orders["data"]) == 13 and all(e["event"] == "Order Completed" for e in orders["data"])
    window = get(live_server, f"/v1/profiles/user_id:{person}/events", limit=100,
                 start=(T0 + timedelta(hours=5)).isoformat(), end=(T0 + timedelta(hours=9)).isoformat()).json()
    assert [e["properties"]["n"] for e in window["data"]] == [8, 7, 6, 5, 4]


def test_accounts_collection_and_audiences(live_server, person) -> None:  # type: ignore[no-untyped-def]
    account = get(live_server, f"/v1/spaces/main/collections/accounts/profiles/group_id:{person}-co/traits")
    assert account.json()["traits"] == {"name": "Co"}
    engine = live_server.engine()
    with engine.begin() as conn:
        from cdp.profiles.service import resolve_identifier

        profile_id = resolve_identifier(conn, f"user_id:{person}", entity="users")
        conn.execute(insert(profile_traits).values(profile_id=profile_id, name="high_value", value=True,
                                                   **{"class": "audience"}, event_time=T0, received_at=T0))
    engine.dispose()
    data = get(live_server, f"/v1/profiles/user_id:{person}/audiences").json()["data"]
    assert [(d["key"], d["entered_at"][:10]) for d in data] == [("high_value", "2026-02-01")]


def test_auth_and_errors(live_server, person) -> None:  # type: ignore[no-untyped-def]
    path = f"/v1/profiles/user_id:{person}/traits"
    assert httpx.get(f"{live_server.url}{path}").status_code == 401
    by_write_key = httpx.get(f"{live_server.url}{path}", auth=(live_server.write_key, ""))
    assert by_write_key.status_code == 401 and by_write_key.json()["error"]["code"] == "authentication_error"
    engine = live_server.engine()
    with engine.begin() as conn:
        _, recs_only = create_token(conn, name="app", scopes=["recommendations:read"], now=T0)
        _, reader = create_token(conn, name="bi", scopes=["profiles:read"], now=T0)
    engine.dispose()
    assert get(live_server, path, token=recs_only).status_code == 403
    assert httpx.get(f"{live_server.url}{path}", auth=(reader, "")).status_code == 200, "Basic with token as user"
    missing = get(live_server, "/v1/profiles/user_id:nobody/traits")
    assert missing.status_code == 404 and missing.json() == {"error": {"code": "not_found", "message": "Profile was not found."}}
    for bad in ("/v1/profiles/nocolon/traits", f"{path}?limit=0", f"/v1/profiles/user_id:{person}/events?next=garbage",
                f"/v1/profiles/user_id:{person}/events?start=yesterday", f"{path}?class=magic"):
        answer = get(live_server, bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error"]["message"]


def test_merge_log_and_split_over_http(live_server) -> None:  # type: ignore[no-untyped-def]
    user = f"m-{uuid.uuid4().hex[:8]}"
    batch = [
        {"type": "identify", "anonymousId": f"{user}-app", "userId": user, "timestamp": T0.isoformat()},
        {"type": "track", "anonymousId": f"{user}-web", "event": "Browsed", "timestamp": T0.isoformat()},
        {"type": "identify", "anonymousId": f"{user}-web", "userId": user, "timestamp": (T0 + timedelta(1)).isoformat()},
    ]
    assert httpx.post(f"{live_server.url}/v1/batch", json={"batch": batch}, auth=(live_server.write_key, "")).is_success
    live_server.wait_attributed()
    log = get(live_server, f"/v1/profiles/user_id:{user}/merges").json()["data"]
    [merge] = log
    assert merge["outcome"] == "merged" and merge["identifier_value"] == f"{user}-web"
    headers = {"authorization": f"Bearer {live_server.admin_token}"}
    answer = httpx.post(f"{live_server.url}/v1/merges/{merge['id']}/split", headers=headers)
    assert answer.status_code == 200 and answer.json()["data"]["split_at"]
    web = get(live_server, f"/v1/profiles/anonymous_id:{user}-web/events").json()["data"]
    assert [e["event"] for e in web] == ["Browsed"]
    again = httpx.post(f"{live_server.url}/v1/merges/{merge['id']}/split", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert httpx.post(f"{live_server.url}/v1/merges/999999/split", headers=headers).status_code == 404
