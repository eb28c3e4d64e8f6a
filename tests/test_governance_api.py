"""Tracking plans through a live ``cdp serve`` (two workers) on SQLite and PostgreSQL: the API and the modes."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cdp.auth.service import create_source, create_token
from cdp.store.tables import events, quarantine
from tests.conftest import LiveServer
from tests.test_cli import cdp
from tests.test_governance import BATCH, BROKEN, RULES


@pytest.fixture(scope="module")
def admin(live_server: LiveServer):  # type: ignore[no-untyped-def]
    headers = {"authorization": f"Bearer {live_server.admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def plan(admin) -> str:  # type: ignore[no-untyped-def]
    answer = admin.post("/v1/tracking-plans", json={"name": "shop", "rules": RULES})
    assert answer.status_code == 201, answer.text
    return "shop"


def new_source(server: LiveServer) -> tuple[str, str]:
    """A source of its own (name, write key), so that each test sets its mode before any traffic."""
    engine = server.engine()
    with engine.begin() as conn:
        source, key = create_source(conn, name=f"src-{uuid.uuid4().hex[:8]}", now=datetime.now(UTC))
    engine.dispose()
    return source.name, key


def send(server: LiveServer, key: str, messages: list[dict[str, Any]]) -> httpx.Response:
    tagged = [dict(m, messageId=f"{key[:12]}:{m['messageId']}") for m in messages]
    return httpx.post(f"{server.url}/v1/batch", json={"batch": tagged}, auth=(key, ""), timeout=30)


def rows(server: LiveServer, key: str, table=events):  # type: ignore[no-untyped-def]
    engine = server.engine()
    with engine.connect() as conn:
        found = conn.execute(select(table).where(table.c.message_id.startswith(f"{key[:12]}:"))).all()
    engine.dispose()
    return {r.message_id.split(":", 1)[1]: r for r in found}


@pytest.mark.parametrize("mode", ["allow", "flag", "block"])
def test_modes_through_the_tracking_api(live_server, admin, plan, mode) -> None:  # type: ignore[no-untyped-def]
    source, key = new_source(live_server)
    assigned = admin.put(f"/v1/sources/{source}/tracking-plan", json={"plan": plan, "mode": mode})
    assert assigned.status_code == 200 and assigned.json() == {"source": source, "plan": plan, "mode": mode}
    answer = send(live_server, key, BATCH)
    assert answer.status_code == 200, answer.text
    stored = rows(live_server, key)
    if mode == "block":
        body = answer.json()
        assert (body["accepted"], body["quarantined"]) == (2, 4)
        assert {e["code"] for e in body["errors"]} == {"plan_violation"}
        assert set(stored) == {"good", "page"}
        assert set(rows(live_server, key, quarantine)) == BROKEN
    else:
        assert answer.json() == {"success": True}
        assert set(stored) == {m["messageId"] for m in BATCH}
        marked = {mid for mid, row in stored.items() if "violationErrors" in (row.payload.get("context") or {})}
        assert marked == (BROKEN if mode == "flag" else set())
    counts = admin.get("/v1/violations", params={"source": source, "window": "1h"}).json()
    assert counts["window"] == "1h"
    assert {(c["event"], c["kind"], c["count"]) for c in counts["data"]} == {
        ("Order Completed", "Required-Missing", 1), ("Order Completed", "Datatype-Mismatch", 1),
        ("Order Completed", "Additional-Properties", 1), ("Cart Abandoned", "Unplanned-Event", 1),
        (None, "Invalid-Value", 1)}


def test_a_blocked_single_call_is_quarantined_with_a_200(live_server, admin, plan) -> None:  # type: ignore[no-untyped-def]
    source, key = new_source(live_server)
    admin.put(f"/v1/sources/{source}/tracking-plan", json={"plan": plan, "mode": "block"})
    answer = httpx.post(f"{live_server.url}/v1/track", auth=(key, ""),
                        json={"userId": "u1", "event": "Cart Abandoned", "messageId": f"{key[:12]}:single"})
    assert answer.status_code == 200
    assert answer.json()["quarantined"] == 1 and answer.json()["errors"][0]["code"] == "plan_violation"
    # A Spec mistake stays a 400.
    assert httpx.post(f"{live_server.url}/v1/track", auth=(key, ""), json={"userId": "u1"}).status_code == 400


def test_blocked_messages_are_replayed_after_a_plan_update(live_server, admin) -> None:  # type: ignore[no-untyped-def]
    assert admin.post("/v1/tracking-plans", json={"name": "strict", "rules": RULES}).status_code == 201
    source, key = new_source(live_server)
    admin.put(f"/v1/sources/{source}/tracking-plan", json={"plan": "strict", "mode": "block"})
    assert send(live_server, key, BATCH).json()["quarantined"] == 4

    loosened = copy.deepcopy(RULES)
    loosened["allow_unplanned"] = True
    del loosened["identify"]
    updated = admin.post("/v1/tracking-plans/strict/versions", json={"rules": loosened})
    assert updated.status_code == 201 and updated.json()["version"] == 2
    shown = admin.get("/v1/tracking-plans/strict").json()
    assert shown["versions"] == 2 and shown["sources"] == [{"source": source, "plan": "strict", "mode": "block"}]
    assert admin.get("/v1/tracking-plans/strict", params={"version": 1}).json()["rules"] == RULES

    replayed = cdp(live_server.settings, "quarantine", "replay")
    assert replayed.returncode == 0, replayed.stderr
    assert set(rows(live_server, key)) == {"good", "page", "unplanned", "bad-email"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/v1/tracking-plans", {"name": "x", "rules": {"events": {"A": {"type": "strin"}}}}, 400, "invalid_request"),
        ("post", "/v1/tracking-plans", {"name": "x"}, 400, "invalid_request"),
        ("post", "/v1/tracking-plans", {"name": "shop", "rules": {}}, 409, "conflict"),
        ("get", "/v1/tracking-plans/nope", None, 404, "not_found"),
        ("get", "/v1/tracking-plans/shop?version=9", None, 404, "not_found"),
        # Beyond the store's integers (a 500 once: SQLite's driver raised OverflowError).
        ("get", f"/v1/tracking-plans/shop?version={10**22}", None, 400, "invalid_request"),
        ("post", "/v1/tracking-plans/nope/versions", {"rules": {}}, 404, "not_found"),
        ("put", "/v1/sources/nope/tracking-plan", {"plan": "shop", "mode": "flag"}, 404, "not_found"),
        ("put", "/v1/sources/nope/tracking-plan", {"plan": "shop", "mode": "drop"}, 400, "invalid_request"),
        ("delete", "/v1/sources/nope/tracking-plan", None, 404, "not_found"),
        ("get", "/v1/violations?window=2h", None, 400, "invalid_request"),
        ("get", "/v1/violations?source=nope", None, 404, "not_found"),
    ],
)
def test_api_mistakes_get_a_clear_4xx(admin, plan, method, path, body, status, code) -> None:  # type: ignore[no-untyped-def]
    answer = admin.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"]


def test_a_nul_character_in_a_name_is_a_clear_4xx(admin) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL refuses NUL in text (psycopg's DataError, once a 500); SQLite finds no such plan.
    answer = admin.get("/v1/tracking-plans/sh%00op")
    assert answer.status_code in (400, 404) and answer.json()["error"]["message"], answer.text


def test_the_api_needs_an_admin_token(live_server, plan) -> None:  # type: ignore[no-untyped-def]
    engine = live_server.engine()
    with engine.begin() as conn:
        _, reader_token = create_token(conn, name="profiles", scopes=["profiles:read"], now=datetime.now(UTC))
    engine.dispose()
    url = f"{live_server.url}/v1/tracking-plans/{plan}"
    for headers, auth, status in [
        ({}, None, 401),
        ({"authorization": "Bearer nope"}, None, 401),
        ({}, (live_server.write_key, ""), 401),  # a write key is no API token
        ({"authorization": f"Bearer {reader_token}"}, None, 403),
        ({}, (live_server.admin_token, ""), 200),  # Basic with the token as user name
    ]:
        answer = httpx.get(url, headers=headers, auth=auth)
        assert answer.status_code == status, answer.text
        if status != 200:
            assert answer.json()["error"]["code"] == ("authentication_error" if status == 401 else "forbidden")
