"""Audiences on SQLite and PostgreSQL: every operator against a hand-made answer, real-time membership
equal to batch on random event streams, entered / exited history, the Profile API's view."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from cdp.audiences.membership import history_of, preview, recompute, refresh_profiles
from cdp.audiences.schemas import parse_audience, parse_condition
from cdp.audiences.service import get_audience, save_audience
from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.errors import InvalidInput
from cdp.events.ingest import LIVE_HOOKS, IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.identity.service import find_profile
from cdp.profiles.service import audiences_of
from cdp.profiles.traits import record_trait_changes
from cdp.store.tables import audience_members

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
CONFIG = IngestConfig.from_settings(Settings())
_ids = itertools.count()


def day(n: float) -> datetime:
    return NOW + timedelta(days=n)


@pytest.fixture
def send(engine: Engine):  # type: ignore[no-untyped-def]
    """Ingest messages at event time ``at`` (received then too), as a backfill: membership is then evaluated
    explicitly, at a chosen time, instead of by the live hook at the wall clock's."""
    with engine.begin() as conn:
        source_id = create_source(conn, name="app", now=NOW)[0].id

    def send(*messages, at=NOW, live=False):  # type: ignore[no-untyped-def]
        batch = [{"messageId": f"m{next(_ids)}", "timestamp": at.isoformat(), **m} for m in messages]
        with engine.begin() as conn:
            ingest(conn, source_id=source_id, messages=batch, envelope=Envelope(received_at=at), config=CONFIG,
                   live=live)

    return send


def profile(engine: Engine, user: str) -> int:
    with engine.connect() as conn:
        found = find_profile(conn, type="user_id", value=user, entity="users")
    assert found is not None
    return found


def set_trait(engine: Engine, user: str, name: str, value: object, trait_class: str) -> None:
    profile_id = profile(engine, user)
    with engine.begin() as conn:
        record_trait_changes(conn, [{"profile_id": profile_id, "name": name, "value": value,
                                     "class": trait_class, "source_id": None, "message_id": None,
                                     "event_time": NOW, "received_at": NOW}])


def who(engine: Engine, condition: dict) -> set[str]:
    """The user ids a condition holds for at NOW (via preview: size and sample agree on small data)."""
    with engine.connect() as conn:
        found = preview(conn, condition=parse_condition(condition), as_of=NOW)
    assert found.size == len(found.sample)
    return {row["user_id"] for row in found.sample}


PEOPLE = {
    "ann": {"plan": "pro", "age": 31, "email": "ann@example.com", "vip": True, "renews": "2026-03-15T00:00:00Z",
            "signed_up": "2025-01-01"},
    "bob": {"plan": "free", "age": 19, "email": "bob@test.io", "vip": False, "renews": "2026-02-01T10:00:00+02:00",
            "signed_up": "not a date"},
    "cy": {"plan": "max", "age": 45.5, "renews": "2026-04-30"},
    "dee": {"plan": None},
}


@pytest.fixture
def people(engine: Engine, send) -> Engine:  # type: ignore[no-untyped-def]
    for user, traits in PEOPLE.items():
        send({"type": "identify", "userId": user, "traits": traits}, at=day(-20))
    return engine


@pytest.mark.parametrize(("condition", "expected"), [
    ({"trait": "plan", "op": "eq", "value": "pro"}, {"ann"}),
    ({"trait": "plan", "op": "neq", "value": "pro"}, {"bob", "cy"}),
    ({"trait": "age", "op": "lt", "value": 31}, {"bob"}),
    ({"trait": "age", "op": "lte", "value": 31}, {"ann", "bob"}),
    ({"trait": "age", "op": "gt", "value": 31}, {"cy"}),
    ({"trait": "age", "op": "gte", "value": 45.5}, {"cy"}),
    ({"trait": "plan", "op": "in", "value": ["pro", "max"]}, {"ann", "cy"}),
    ({"trait": "vip", "op": "eq", "value": True}, {"ann"}),
    ({"trait": "email", "op": "contains", "value": "@example"}, {"ann"}),
    ({"trait": "email", "op": "not_contains", "value": "@example"}, {"bob"}),
    ({"trait": "email", "op": "starts_with", "value": "bo"}, {"bob"}),
    ({"trait": "email", "op": "ends_with", "value": ".com"}, {"ann"}),
    ({"trait": "email", "op": "exists"}, {"ann", "bob"}),
    ({"trait": "plan", "op": "not_exists"}, {"dee"}),
    ({"trait": "renews", "op": "before", "value": "2026-03-01"}, {"bob"}),
    ({"trait": "renews", "op": "after", "value": "2026-03-15T00:00:00Z"}, {"cy"}),
    ({"trait": "renews", "op": "within_next", "value": 7}, {"ann"}),
    ({"trait": "renews", "op": "within_last", "value": 40}, {"bob"}),
    ({"trait": "signed_up", "op": "before", "value": "2026-01-01"}, {"ann"}),
    ({"trait": "plan", "class": "computed", "op": "exists"}, set()),
])
def test_trait_operators(people: Engine, condition: dict, expected: set[str]) -> None:
    assert who(people, {"type": "trait", **condition}) == expected


def test_and_or_not_predictions_and_computed_traits(people: Engine) -> None:
    set_trait(people, "ann", "churn_percentile", 0.85, "predicted")
    set_trait(people, "bob", "churn_percentile", 0.5, "predicted")
    set_trait(people, "cy", "churn_percentile", 0.95, "identify")  # not a prediction
    set_trait(people, "cy", "orders", 3, "computed")
    top20 = {"type": "prediction", "prediction": "churn", "top_percent": 20}
    assert who(people, top20) == {"ann"}
    assert who(people, {"type": "prediction", "prediction": "churn", "bottom_percent": 50}) == {"bob"}
    assert who(people, {"type": "trait", "trait": "orders", "class": "computed", "op": "gte", "value": 2}) == {"cy"}
    either = {"type": "or", "conditions": [top20, {"type": "trait", "trait": "orders", "op": "gt", "value": 0}]}
    assert who(people, either) == {"ann", "cy"}
    assert who(people, {"type": "not", "condition": either}) == {"bob", "dee"}
    both = {"type": "and", "conditions": [top20, {"type": "trait", "trait": "plan", "op": "eq", "value": "free"}]}
    assert who(people, both) == set()


def order(user: str, **properties: object) -> dict:
    return {"type": "track", "userId": user, "event": "Order Completed", "properties": properties}


def test_event_conditions_counts_windows_filters_and_not_performed(engine: Engine, send) -> None:  # type: ignore[no-untyped-def]
    send(order("ann", total=50), order("ann", total=5), at=day(-3))
    send(order("ann", total=70), at=day(-40))
    send(order("bob", total=80), at=day(-1))
    send(order("cy", total=90), at=day(1))  # after NOW: not yet
    send({"type": "page", "userId": "dee", "name": "Pricing"}, at=day(-2))
    twice = {"type": "event", "event": "Order Completed", "at_least": 2}
    assert who(engine, twice) == {"ann"}
    assert who(engine, {**twice, "within_days": 30}) == {"ann"}
    assert who(engine, {**twice, "at_least": 3, "within_days": 30}) == set()
    assert who(engine, {**twice, "at_least": 3}) == {"ann"}
    big = {"type": "event", "event": "Order Completed", "filters": [{"property": "total", "op": "gte", "value": 60}]}
    assert who(engine, big) == {"ann", "bob"}
    assert who(engine, {**big, "within_days": 30}) == {"bob"}
    assert who(engine, {"type": "event", "event": "Order Completed", "performed": False}) == {"cy", "dee"}
    assert who(engine, {"type": "event", "call": "page", "event": "Pricing", "within_days": 7}) == {"dee"}


def test_bad_definitions_are_one_clear_line(engine: Engine) -> None:
    for bad, text in [
        ({"key": "x", "condition": {"type": "trait", "trait": "a", "op": "in", "value": "pro"}}, "non-empty list"),
        ({"key": "x", "condition": {"type": "trait", "trait": "a", "op": "before", "value": "soon"}}, "ISO 8601"),
        ({"key": "x", "condition": {"type": "prediction", "prediction": "churn"}}, "exactly one"),
        ({"key": "x", "condition": {"type": "bogus"}}, "condition"),
        ({"key": "-x", "condition": {"type": "audience", "audience": "y"}}, "key must be"),
    ]:
        with pytest.raises(InvalidInput, match=text):
            parse_audience(bad)
    with engine.begin() as conn, pytest.raises(InvalidInput, match="no audience with key 'nope'"):
        save_audience(conn, definition=parse_audience(
            {"key": "x", "condition": {"type": "audience", "audience": "nope"}}), now=NOW)


def define(engine: Engine, key: str, condition: dict, *, as_of: datetime = NOW) -> None:
    with engine.begin() as conn:
        save_audience(conn, definition=parse_audience({"key": key, "condition": condition}), now=as_of)
        recompute(conn, keys=[key], as_of=as_of)


def members(engine: Engine, key: str) -> set[int]:
    with engine.connect() as conn:
        audience_id = get_audience(conn, key=key).id
        return set(conn.execute(select(audience_members.c.profile_id).where(
            audience_members.c.audience_id == audience_id)).scalars())


def test_entered_exited_history_audience_traits_and_audiences_of_audiences(engine: Engine, send) -> None:  # type: ignore[no-untyped-def]
    send({"type": "identify", "userId": "ann", "traits": {"plan": "pro"}}, at=day(-1))
    define(engine, "pro", {"type": "trait", "trait": "plan", "op": "eq", "value": "pro"})
    define(engine, "pro_buyers", {"type": "and", "conditions": [
        {"type": "audience", "audience": "pro"}, {"type": "event", "event": "Order Completed"}]})
    ann = profile(engine, "ann")
    assert members(engine, "pro") == {ann} and members(engine, "pro_buyers") == set()
    send(order("ann"), at=NOW)
    with engine.begin() as conn:
        refresh_profiles(conn, profile_ids={ann}, now=day(0.1))
    assert members(engine, "pro_buyers") == {ann}
    send({"type": "identify", "userId": "ann", "traits": {"plan": "free"}}, at=day(0.2))
    with engine.begin() as conn:
        changes = refresh_profiles(conn, profile_ids={ann}, now=day(0.3))
    assert [(c.key, c.entered, c.exited) for c in changes] == [("pro", 0, 1), ("pro_buyers", 0, 1)]
    with engine.connect() as conn:
        history = [(row.change, row.at) for row in history_of(conn, profile_id=ann)]
        assert audiences_of(conn, profile_id=ann) == []
    assert history == [("entered", NOW), ("entered", day(0.1)), ("exited", day(0.3)), ("exited", day(0.3))]
    with engine.begin() as conn:
        with pytest.raises(InvalidInput, match="refer back to itself"):
            save_audience(conn, definition=parse_audience(
                {"key": "pro", "condition": {"type": "audience", "audience": "pro_buyers"}}), now=NOW)


def test_live_events_update_membership_and_the_profile_api_view(engine: Engine, send) -> None:  # type: ignore[no-untyped-def]
    assert any(getattr(hook, "__name__", "") == "on_live_events" for hook in LIVE_HOOKS)
    now = datetime.now(UTC)
    define(engine, "shoppers", {"type": "event", "event": "Order Completed", "within_days": 1}, as_of=now)
    send(order("ann"), at=now - timedelta(minutes=1), live=True)
    send(order("bob"), at=now - timedelta(minutes=1), live=False)  # a backfill: no real-time change
    assert members(engine, "shoppers") == {profile(engine, "ann")}
    with engine.connect() as conn:
        [row] = audiences_of(conn, profile_id=profile(engine, "ann"))
    assert row.name == "shoppers"
    with engine.begin() as conn:
        [change] = recompute(conn, as_of=datetime.now(UTC), deliver=False)
    assert (change.size, change.entered, change.exited) == (2, 1, 0)


RANDOM_AUDIENCES = {
    "buyers": {"type": "event", "event": "Order Completed", "at_least": 2, "within_days": 60},
    "big": {"type": "event", "event": "Order Completed", "filters": [{"property": "total", "op": "gt", "value": 50}]},
    "pro": {"type": "trait", "trait": "plan", "op": "in", "value": ["pro", "max"]},
    "lapsed_pro": {"type": "and", "conditions": [
        {"type": "audience", "audience": "pro"},
        {"type": "not", "condition": {"type": "event", "event": "Page Viewed", "within_days": 60}}]},
    "either": {"type": "or", "conditions": [{"type": "audience", "audience": "big"},
                                            {"type": "trait", "trait": "age", "op": "gte", "value": 40}]},
}


@pytest.mark.parametrize("path", ["refresh_profiles", "live hook"])
def test_real_time_equals_batch_on_random_event_streams(engine: Engine, send, path: str) -> None:  # type: ignore[no-untyped-def]
    """Explicitly at event time, or by the live hook (which evaluates only the audiences reading what
    the events changed) at the wall clock's, some days after the events."""
    live = path == "live hook"
    start = datetime.now(UTC) - timedelta(days=5) if live else NOW
    rng = random.Random(7)
    users = [f"u{n}" for n in range(12)]
    send(*({"type": "identify", "userId": user, "traits": {"age": 20}} for user in users), at=start - timedelta(days=1))
    for key, condition in RANDOM_AUDIENCES.items():
        define(engine, key, condition, as_of=start - timedelta(days=1))
    for step in range(40):
        at = start + timedelta(days=step / 10)  # every event within the shortest window: none ages out during the test
        batch = []
        for _ in range(rng.randint(1, 4)):
            user = rng.choice(users)
            batch.append(rng.choice([
                order(user, total=rng.randint(1, 100)),
                {"type": "track", "userId": user, "event": "Page Viewed"},
                {"type": "identify", "userId": user, "traits": {"plan": rng.choice(["free", "pro", "max", None]),
                                                                  "age": rng.randint(18, 60)}},
            ]))
        send(*batch, at=at, live=live)
        if not live:
            touched = {profile(engine, message["userId"]) for message in batch}
            with engine.begin() as conn:
                refresh_profiles(conn, profile_ids=touched, now=at)
    incremental = {key: members(engine, key) for key in RANDOM_AUDIENCES}
    with engine.begin() as conn:
        changes = recompute(conn, as_of=datetime.now(UTC) if live else day(4), deliver=False)
    assert all(c.entered == c.exited == 0 for c in changes), changes
    assert {key: members(engine, key) for key in RANDOM_AUDIENCES} == incremental
    assert any(incremental.values()) and not all(len(m) == len(users) for m in incremental.values())
