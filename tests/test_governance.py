"""Tracking plans: checking, the allow / flag / block modes at ingestion, quarantine replay, counts, inference."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import pytest
from sqlalchemy import func, select

from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.demo.simulate import SimulationConfig, iter_events
from cdp.errors import Conflict, InvalidInput, NotFound
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.quarantine import count_pending, list_pending, replay
from cdp.events.schemas import Envelope
from cdp.governance.check import MAX_VIOLATIONS, check_message, compile_rules
from cdp.governance.infer import infer_plan
from cdp.governance.service import (
    add_version,
    assign_plan,
    count_violations,
    create_plan,
    get_plan,
    load_active_plan,
    unassign_plan,
)
from cdp.store.tables import events, violations

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
CONFIG = IngestConfig.from_settings(Settings())

ORDER = {
    "type": "object",
    "required": ["properties"],
    "properties": {
        "properties": {
            "type": "object",
            "required": ["order_id", "revenue"],
            "additionalProperties": False,
            "properties": {
                "order_id": {"type": "string"},
                "revenue": {"type": "number"},
                "currency": {"enum": ["USD", "EUR"]},
                "products": {"type": "array", "items": {"type": "object", "properties": {"price": {"type": "number"}}}},
            },
        }
    },
}
RULES: dict[str, Any] = {
    "events": {"Order Completed": ORDER},
    "identify": {"properties": {"traits": {"properties": {"email": {"type": "string", "format": "email"}}}}},
    "allow_unplanned": False,
}


def track(event: str, message_id: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": event, "messageId": message_id, "properties": properties}


# One message per way of breaking RULES, and two that follow them.
BATCH = [
    track("Order Completed", "good", order_id="o1", revenue=10.5, currency="USD"),
    track("Order Completed", "wrong", revenue="10"),  # order_id missing, revenue a string
    track("Order Completed", "extra", order_id="o2", revenue=1, gift=True),
    track("Cart Abandoned", "unplanned"),
    {"type": "identify", "userId": "u1", "messageId": "bad-email", "traits": {"email": "not an email"}},
    {"type": "page", "anonymousId": "a1", "messageId": "page", "name": "Home"},  # no page rules: fine
]
BROKEN = {"wrong", "extra", "unplanned", "bad-email"}


def kinds(message: dict[str, Any], rules: dict[str, Any] = RULES) -> list[tuple[str, str]]:
    return [(v.kind, v.field) for v in check_message(message, compile_rules(rules))]


def test_check_message_names_the_kind_and_the_field() -> None:
    assert kinds(BATCH[0]) == []
    assert kinds(BATCH[1]) == [("Required-Missing", "properties.order_id"), ("Datatype-Mismatch", "properties.revenue")]
    assert kinds(BATCH[2]) == [("Additional-Properties", "properties.gift")]
    assert kinds(BATCH[3]) == [("Unplanned-Event", "event")]
    assert kinds(BATCH[4]) == [("Invalid-Value", "traits.email")]
    assert kinds(BATCH[5]) == []
    assert kinds(track("Order Completed", "m", order_id="o", revenue=1, currency="GBP")) == [
        ("Invalid-Value", "properties.currency")]
    nested = track("Order Completed", "m", order_id="o", revenue=1, products=[{"price": 1}, {"price": "2"}])
    [violation] = check_message(nested, compile_rules(RULES))
    assert violation.field == "properties.products[1].price"
    assert violation.message == "properties.products[1].price must be number, got string"
    assert violation.as_context() == {
        "type": "Datatype-Mismatch",
        "message": "properties.products[1].price must be number, got string",
        "meta": {"instancePath": "/properties/products/1/price",
                 "schemaPath": "#/events/Order Completed/properties/properties/properties/products/items/properties/price/type"},
    }
    assert kinds(BATCH[3], {**RULES, "allow_unplanned": True}) == []
    # Rules for every message, and a message whose properties are missing altogether.
    common = {**RULES, "common": {"required": ["userId"]}}
    assert kinds({"type": "page", "anonymousId": "a", "name": "Home"}, common) == [("Required-Missing", "userId")]
    assert kinds({"type": "track", "userId": "u", "event": "Order Completed"}) == [("Required-Missing", "properties")]


def test_violation_texts_never_quote_the_values() -> None:
    [violation] = check_message(
        {"type": "identify", "userId": "u", "traits": {"email": "jane.doe at example"}}, compile_rules(RULES)
    )
    assert "jane" not in violation.message and violation.message.startswith("traits.email:")


def test_a_flood_of_violations_is_capped() -> None:
    many = track("Order Completed", "m", order_id="o", revenue=1, products=[{"price": "x"}] * 500)
    assert len(check_message(many, compile_rules(RULES))) == MAX_VIOLATIONS


@pytest.mark.parametrize(
    ("rules", "error"),
    [
        ([], "must be a JSON object"),
        ({"event": {}}, "unknown key 'event'"),
        ({"events": []}, "rules.events must be an object"),
        ({"events": {"A": {"type": "strin"}}}, 'rules.events.A is not a valid JSON Schema at type: "strin"'),
        ({"events": {"A": {"properties": {"properties": {"required": "x"}}}}}, "at properties.properties.required"),
        ({"identify": 3}, "rules.identify must be a JSON Schema"),
        ({"allow_unplanned": "yes"}, "allow_unplanned must be true or false"),
        ({"events": {"A": {"$ref": "http://169.254.169.254/latest"}}}, "is not fetched"),
    ],
)
def test_invalid_rules_are_refused_with_a_clear_message(rules: Any, error: str) -> None:
    with pytest.raises(InvalidInput, match=error.replace("(", r"\(").replace("$", r"\$")):
        compile_rules(rules)


@pytest.fixture
def source_id(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        return create_source(conn, name="web", now=NOW)[0].id


def _ingest(engine, source_id: int, messages: list[dict[str, Any]], *, received_at: datetime = NOW,
            context: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        return ingest(conn, source_id=source_id, messages=copy.deepcopy(messages),
                      envelope=Envelope(received_at=received_at, context=context), config=CONFIG)


def _stored(engine) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {r.message_id: r.payload for r in conn.execute(select(events.c.message_id, events.c.payload))}


def _logged(engine) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        rows = conn.execute(select(violations.c.message_id, violations.c.kind, violations.c.field).order_by(violations.c.id))
        return [tuple(r) for r in rows]


EXPECTED_LOG = [
    ("wrong", "Required-Missing", "properties.order_id"),
    ("wrong", "Datatype-Mismatch", "properties.revenue"),
    ("extra", "Additional-Properties", "properties.gift"),
    ("unplanned", "Unplanned-Event", "event"),
    ("bad-email", "Invalid-Value", "traits.email"),
]


def test_plans_are_versioned_and_assigned(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        created = create_plan(conn, name="shop", rules=RULES, now=NOW)
        assert (created.version, created.versions, created.sources) == (1, 1, ())
        with pytest.raises(Conflict):
            create_plan(conn, name="shop", rules=RULES, now=NOW)
        with pytest.raises(InvalidInput, match="rules.events.A"):
            add_version(conn, name="shop", rules={"events": {"A": {"type": 1}}}, now=NOW)
        add_version(conn, name="shop", rules={**RULES, "allow_unplanned": True}, now=NOW + timedelta(hours=1))
        assign_plan(conn, source="web", plan="shop", mode="flag", now=NOW)
        assign_plan(conn, source="web", plan="shop", mode="block", now=NOW)  # a second assignment replaces the first
        plan = get_plan(conn, name="shop")
        assert (plan.version, plan.versions, plan.rules["allow_unplanned"]) == (2, 2, True)
        assert [(s.source, s.mode) for s in plan.sources] == [("web", "block")]
        assert get_plan(conn, name="shop", version=1).rules == RULES
        active = load_active_plan(conn, source_id=source_id)
        assert active is not None and (active.name, active.version, active.mode) == ("shop", 2, "block")
        for call, error in [
            (lambda: get_plan(conn, name="shop", version=3), "has no version 3; its newest is 2"),
            (lambda: get_plan(conn, name="nope"), "no tracking plan named 'nope'"),
            (lambda: assign_plan(conn, source="ios", plan="shop", mode="flag", now=NOW), "no source named 'ios'"),
        ]:
            with pytest.raises(NotFound, match=error):
                call()
        with pytest.raises(InvalidInput, match="unknown mode 'drop'"):
            assign_plan(conn, source="web", plan="shop", mode="drop", now=NOW)
        unassign_plan(conn, source="web")
        assert load_active_plan(conn, source_id=source_id) is None
        with pytest.raises(NotFound, match="has no tracking plan"):
            unassign_plan(conn, source="web")


def test_allow_mode_stores_everything_and_counts_the_violations(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    _ingest(engine, source_id, [track("Anything", "before-the-plan")])  # caches "no plan" for the source
    with engine.begin() as conn:
        create_plan(conn, name="shop", rules=RULES, now=NOW)
        assign_plan(conn, source="web", plan="shop", mode="allow", now=NOW)
    result = _ingest(engine, source_id, BATCH)
    assert (result.accepted, result.quarantined) == (6, 0)
    stored = _stored(engine)
    assert stored["wrong"]["properties"] == {"revenue": "10"} and "context" not in stored["wrong"]
    assert _logged(engine) == EXPECTED_LOG


def test_flag_mode_stores_everything_and_marks_the_broken_events(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        create_plan(conn, name="shop", rules=RULES, now=NOW)
        assign_plan(conn, source="web", plan="shop", mode="flag", now=NOW)
    shared = {"library": {"name": "analytics-python", "version": "2.3.3"}}
    result = _ingest(engine, source_id, BATCH, context=shared)
    assert (result.accepted, result.quarantined) == (6, 0)
    stored = _stored(engine)
    assert {mid for mid, p in stored.items() if "violationErrors" in p["context"]} == BROKEN
    assert [e["type"] for e in stored["wrong"]["context"]["violationErrors"]] == ["Required-Missing", "Datatype-Mismatch"]
    assert stored["wrong"]["context"]["library"] == shared["library"]
    assert stored["good"]["context"] == shared  # the batch's shared context is not marked through another message
    assert _logged(engine) == EXPECTED_LOG


def test_block_mode_quarantines_the_broken_messages_until_the_plan_allows_them(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        create_plan(conn, name="shop", rules=RULES, now=NOW)
        assign_plan(conn, source="web", plan="shop", mode="block", now=NOW)
    result = _ingest(engine, source_id, [{"type": "track", "messageId": "no-user", "event": "E"}, *BATCH])
    assert (result.accepted, result.quarantined) == (2, 5)
    assert [(r.index, r.message_id, r.code) for r in result.rejections] == [
        (0, "no-user", "no_user_anon_id"), (2, "wrong", "plan_violation"), (3, "extra", "plan_violation"),
        (4, "unplanned", "plan_violation"), (5, "bad-email", "plan_violation")]
    assert result.rejections[1].reason == (
        "tracking plan 'shop' v1: properties.order_id is required; properties.revenue must be number, got string")
    assert set(_stored(engine)) == {"good", "page"}
    assert _logged(engine) == EXPECTED_LOG  # blocked messages count as violations too

    with engine.begin() as conn:  # nothing changed: nothing gets through
        assert replay(conn, now=NOW, config=CONFIG).replayed == 0
        assert count_pending(conn) == {"no_user_anon_id": 1, "plan_violation": 4}

    # The plan learns about Cart Abandoned, gifts and string revenues; order_id stays required.
    loosened = copy.deepcopy(RULES)
    loosened["events"]["Cart Abandoned"] = {}
    order = loosened["events"]["Order Completed"]["properties"]["properties"]["properties"]
    order["gift"] = {"type": "boolean"}
    order["revenue"] = {"type": ["number", "string"]}
    with engine.begin() as conn:
        add_version(conn, name="shop", rules=loosened, now=NOW + timedelta(hours=1))
        outcome = replay(conn, now=NOW + timedelta(hours=1), config=CONFIG)
    assert (outcome.replayed, outcome.still_invalid) == (2, 3)
    assert set(_stored(engine)) == {"good", "page", "extra", "unplanned"}
    with engine.connect() as conn:
        pending = {p.message_id: p.reason for p in list_pending(conn)}
    # Still blocked, now for what version 2 says.
    assert pending["wrong"] == "tracking plan 'shop' v2: properties.order_id is required"
    assert _logged(engine) == EXPECTED_LOG  # replays are not counted again

    with engine.begin() as conn:  # flag mode: the rest is stored, marked
        assign_plan(conn, source="web", plan="shop", mode="flag", now=NOW)
        assert replay(conn, now=NOW, config=CONFIG).replayed == 2
    assert "violationErrors" in _stored(engine)["wrong"]["context"]


def test_violations_are_counted_per_event_and_kind_over_1h_24h_7d(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        other = create_source(conn, name="ios", now=NOW)[0].id
        create_plan(conn, name="shop", rules=RULES, now=NOW)
        assign_plan(conn, source="web", plan="shop", mode="allow", now=NOW)
        assign_plan(conn, source="ios", plan="shop", mode="block", now=NOW)
    for n, ago in enumerate([timedelta(minutes=10), timedelta(minutes=59), timedelta(hours=5),
                             timedelta(days=3), timedelta(days=8), -timedelta(minutes=1)]):
        _ingest(engine, source_id, [track("Order Completed", f"w{n}", order_id="o", revenue="1")], received_at=NOW - ago)
    _ingest(engine, other, [track("Cart Abandoned", "i1"), track("Cart Abandoned", "i2")], received_at=NOW)
    with engine.connect() as conn:
        counts = {(c.source, c.event, c.kind): dict(c.counts) for c in count_violations(conn, now=NOW)}
        assert counts == {
            ("web", "Order Completed", "Datatype-Mismatch"): {"1h": 2, "24h": 3, "7d": 4},
            ("ios", "Cart Abandoned", "Unplanned-Event"): {"1h": 2, "24h": 2, "7d": 2},
        }
        assert [c.source for c in count_violations(conn, now=NOW, source="ios")] == ["ios"]
        assert count_violations(conn, now=NOW - timedelta(days=30)) == []
        with pytest.raises(NotFound):
            count_violations(conn, now=NOW, source="android")


def _simulated(seed: int, n: int) -> list[dict[str, Any]]:
    return list(islice(iter_events(SimulationConfig(profiles=300, days=30, seed=seed)), n))


def test_infer_proposes_a_plan_that_the_traffic_follows(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    seen = _simulated(seed=7, n=4000)
    for start in range(0, len(seen), 500):
        _ingest(engine, source_id, seen[start:start + 500])
    with engine.connect() as conn:
        proposed = infer_plan(conn, source_id=source_id)
        assert infer_plan(conn, sample=50).messages == 50
        planned = conn.execute(select(func.count()).select_from(events).where(events.c.type.in_(["track", "identify"]))).scalar()
    assert proposed.messages == planned
    rules = proposed.rules
    assert set(rules["events"]) == {m["event"] for m in seen if m["type"] == "track"}
    assert rules["allow_unplanned"] is False and "group" not in rules  # the shop sends no group calls
    order = rules["events"]["Order Completed"]["properties"]["properties"]
    assert order["required"] == ["currency", "order_id", "products", "revenue"]
    assert order["properties"]["revenue"] == {"type": "number"}
    assert set(order["properties"]["products"]["items"]["required"]) >= {"product_id", "price", "quantity"}
    clicked = rules["events"]["Product Clicked"]["properties"]["properties"]["properties"]
    assert clicked["position"] == {"type": "integer"}
    traits = rules["identify"]["properties"]["traits"]
    # Upgrades send only the plan: everything else is optional, but typed.
    assert traits["required"] == ["plan"] and traits["properties"]["email"] == {"type": "string"}

    # Enforced, the proposal lets the same shop's traffic through, and flags what breaks it.
    with engine.begin() as conn:
        create_plan(conn, name="inferred", rules=rules, now=NOW)
        assign_plan(conn, source="web", plan="inferred", mode="block", now=NOW)
    fresh = [m for m in _simulated(seed=8, n=3000) if m["type"] != "track" or m["event"] in rules["events"]]
    fresh.append(track("Order Completed", "no-revenue", order_id="o", currency="USD", products=[]))
    result = _ingest(engine, source_id, fresh)
    assert [r.message_id for r in result.rejections] == ["no-revenue"]
