"""Journeys on SQLite and PostgreSQL: delays and waits on an injected clock, splits, re-entry keys,
sticky holdouts and the lift report, the contact policy (caps, quiet hours, priority), backfills that
trigger nothing, and a live server from an HTTP event to a webhook receiver."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import Engine, select

from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.destinations.addresses import Allowlist
from cdp.destinations.schemas import parse_destination
from cdp.destinations.service import create_destination
from cdp.errors import InvalidInput
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.identity.service import find_profile
from cdp.journeys.engine import advance_due, process_events, stable_fraction
from cdp.journeys.report import lift_report
from cdp.journeys.schemas import parse_journey, parse_policy
from cdp.journeys.service import get_journey, save_journey, set_policy
from cdp.journeys.worker import JourneyWorker
from cdp.store.tables import events, journey_instances, journey_sends, outbox
from tests.conftest import start_server, wait_until
from tests.test_destinations import Receiver, receiver  # noqa: F401 (the fixture)

T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
CONFIG = IngestConfig.from_settings(Settings())
_ids = itertools.count()


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def shop(engine: Engine) -> Iterator[tuple[Engine, int, int]]:
    """The engine, a source and a webhook destination (never delivered here: the outbox is what we read)."""
    with engine.begin() as conn:
        source_id = create_source(conn, name="app", now=T0)[0].id
        spec = parse_destination({"type": "webhook", "name": "crm", "url": "http://127.0.0.1:9/hook"})
        destination_id = create_destination(conn, spec=spec, allowlist=Allowlist.parse("127.0.0.1"), now=T0).id
    yield engine, source_id, destination_id


def track(shop: tuple[Engine, int, int], user: str, event: str, at: datetime, **properties: object) -> None:
    """Store a live event at ``at`` and run the journeys on it at ``at`` (the clock injected)."""
    engine, source_id, _ = shop
    message_id = f"m{next(_ids)}"
    with engine.begin() as conn:
        ingest(conn, source_id=source_id, envelope=Envelope(received_at=at), config=CONFIG, live=False, messages=[
            {"type": "track", "userId": user, "event": event, "properties": properties, "messageId": message_id,
             "timestamp": at.isoformat()}])
        row = conn.execute(select(events).where(events.c.message_id == message_id)).one()
        process_events(conn, [dict(row._mapping)], now=at)


def tick(engine: Engine, at: datetime) -> int:
    with engine.begin() as conn:
        return advance_due(conn, now=at)


def define(engine: Engine, **definition: object) -> None:
    with engine.begin() as conn:
        save_journey(conn, definition=parse_journey(definition), now=T0)


def policy(engine: Engine, **document: object) -> None:
    with engine.begin() as conn:
        set_policy(conn, policy=parse_policy(document), now=T0)


def sent(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [row.payload for row in conn.execute(select(outbox.c.payload).order_by(outbox.c.id))]


def sends_log(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        return [(row.step_id, row.status, row.reason) for row in conn.execute(
            select(journey_sends).order_by(journey_sends.c.id))]


def instances(engine: Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(journey_instances).order_by(journey_instances.c.id)).all()


def send_step(step_id: str, destination: int, event: str | None = None) -> dict:
    return {"id": step_id, "type": "send", "destination": destination, **({"event": event} if event else {})}


def test_delay_then_wait_for_event_on_an_injected_clock(shop) -> None:  # type: ignore[no-untyped-def]
    engine, _, hook = shop
    define(engine, key="cart", name="Cart recovery",
           entry={"event": "Product Added", "filters": [{"property": "price", "op": "gte", "value": 10}]},
           reentry_key="cart_id", exit_events=[{"event": "Account Closed"}],
           steps=[{"id": "pause", "type": "delay", "duration": {"hours": 1}},
                  {"id": "checkout", "type": "wait_for_event", "event": "Checkout Started", "timeout": {"hours": 2},
                   "arrived": [send_step("thanks", hook, "Thanks")],
                   "timed_out": [send_step("remind", hook, "Cart Reminder")]}])
    for user in ("ann", "bob", "cy"):
        track(shop, user, "Product Added", T0, price=25, cart_id=f"c-{user}")
    track(shop, "dee", "Product Added", T0, price=5, cart_id="c-dee")  # filtered out
    assert len(instances(engine)) == 3
    assert tick(engine, minutes(59)) == 0, "the delay is not over"
    track(shop, "ann", "Checkout Started", minutes(30))  # during the delay: not what the wait sees
    assert tick(engine, minutes(60)) == 3
    assert {i.step_id for i in instances(engine)} == {"checkout"}
    track(shop, "ann", "Checkout Started", minutes(90), total=25)
    track(shop, "cy", "Account Closed", minutes(100))
    assert [m["event"] for m in sent(engine)] == ["Thanks"]
    assert tick(engine, minutes(179)) == 0
    assert tick(engine, minutes(180)) == 1, "bob's wait times out; ann and cy are done"
    thanks, remind = sent(engine)
    assert remind["event"] == "Cart Reminder" and remind["userId"] == "bob"
    context = thanks["properties"]["journey_context"]
    assert context["triggering_event"]["event"] == "Product Added"
    assert context["triggering_event"]["properties"] == {"price": 25, "cart_id": "c-ann"}
    assert context["Checkout Started - arrived"]["properties"] == {"total": 25}
    assert "Checkout Started - timed out" in remind["properties"]["journey_context"]
    assert thanks["properties"]["journey_metadata"]["journey_key"] == "cart"
    assert thanks["context"]["personas"]["computation_class"] == "journey_step"
    by_user = {i.profile_id: (i.status, i.exit_reason) for i in instances(engine)}
    assert sorted(by_user.values()) == [("completed", None), ("completed", None), ("exited", "exit event Account Closed")]
    assert tick(engine, minutes(10_000)) == 0


def a_nudge_two_days_after_a_view(shop) -> Engine:  # type: ignore[no-untyped-def]
    engine, _, hook = shop
    define(engine, key="later", entry={"event": "Viewed"},
           steps=[{"id": "pause", "type": "delay", "duration": {"days": 2}}, send_step("nudge", hook)])
    track(shop, "ann", "Viewed", T0)
    return engine


@contextmanager
def journey_worker(engine: Engine, clock: Callable[[], datetime]) -> Iterator[None]:
    worker = JourneyWorker(engine, poll_s=0.01, clock=clock).start()
    try:
        yield
    finally:
        worker.stop()


def test_the_worker_fires_timers_on_its_injected_clock(shop) -> None:  # type: ignore[no-untyped-def]
    engine = a_nudge_two_days_after_a_view(shop)
    clock = [minutes(60)]
    with journey_worker(engine, lambda: clock[0]):
        time.sleep(0.3)
        assert sent(engine) == [], "two days have not passed on the worker's clock"
        clock[0] = T0 + timedelta(days=2)
        wait_until(lambda: sent(engine), timeout_s=20)
    assert [m["event"] for m in sent(engine)] == ["later"]


def test_the_worker_outlives_a_failed_round(shop) -> None:  # type: ignore[no-untyped-def]
    engine = a_nudge_two_days_after_a_view(shop)
    calls = []

    def clock() -> datetime:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a defect in one round")
        return T0 + timedelta(days=2)

    with journey_worker(engine, clock):
        wait_until(lambda: sent(engine), timeout_s=20)
    assert [m["event"] for m in sent(engine)] == ["later"]


def test_splits_by_data_and_sticky_random(shop) -> None:  # type: ignore[no-untyped-def]
    engine, _, hook = shop
    define(engine, key="split", entry={"event": "Signed Up"}, steps=[
        {"id": "by_plan", "type": "data_split", "branches": [
            {"name": "pro", "condition": {"type": "trait", "trait": "plan", "op": "eq", "value": "pro"},
             "steps": [send_step("pro_send", hook)]},
            {"name": "from_ads", "event_filters": [{"property": "utm", "op": "eq", "value": "ads"}],
             "steps": [send_step("ads_send", hook)]}],
         "otherwise": [{"id": "ab", "type": "random_split", "branches": [
             {"name": "a", "percent": 50, "steps": [send_step("a_send", hook)]},
             {"name": "b", "percent": 50, "steps": [send_step("b_send", hook)]}]}]}])
    with engine.begin() as conn:
        ingest(conn, source_id=shop[1], envelope=Envelope(received_at=T0), config=CONFIG, live=False, messages=[
            {"type": "identify", "userId": "pat", "traits": {"plan": "pro"}}])
    track(shop, "pat", "Signed Up", T0)
    track(shop, "ada", "Signed Up", T0, utm="ads")
    users = [f"u{n}" for n in range(12)]
    for user in users:
        track(shop, user, "Signed Up", T0)
    steps = [step for step, _, _ in sends_log(engine)]
    assert steps[:2] == ["pro_send", "ads_send"]
    assert set(steps[2:]) == {"a_send", "b_send"}, "both random branches are taken over 12 people"
    contexts = [m["properties"]["journey_context"] for m in sent(engine)]
    assert contexts[0]["by_plan - pro"] == {"branch": "pro"}
    assert contexts[2]["by_plan - otherwise"] == {"branch": "otherwise"} and len(contexts[2]) == 3
    with engine.connect() as conn:
        ids = [find_profile(conn, type="user_id", value=user, entity="users") for user in users]
    expected = ["a_send" if stable_fraction("split", "ab", pid) < 0.5 else "b_send" for pid in ids]
    assert steps[2:] == expected, "the branch follows the profile's hash: the same on every entry"


def test_reentry_key_one_instance_per_value_at_a_time(shop) -> None:  # type: ignore[no-untyped-def]
    engine, _, _ = shop
    define(engine, key="carts", entry={"event": "Product Added"}, reentry_key="cart_id",
           steps=[{"id": "pause", "type": "delay", "duration": {"minutes": 10}}])
    define(engine, key="once", entry={"event": "Product Added"},
           steps=[{"id": "pause", "type": "delay", "duration": {"minutes": 10}}])
    track(shop, "ann", "Product Added", T0, cart_id="A")
    track(shop, "ann", "Product Added", minutes(1), cart_id="A")  # same cart, still on its way
    track(shop, "ann", "Product Added", minutes(2), cart_id="B")
    track(shop, "ann", "Product Added", minutes(3))  # no cart_id: enters only the unkeyed journey (already in)
    assert [(i.journey_id, i.reentry_value) for i in instances(engine)] == [(1, "A"), (2, ""), (1, "B")]
    assert tick(engine, minutes(11)) == 2 and tick(engine, minutes(12)) == 1
    track(shop, "ann", "Product Added", minutes(20), cart_id="A")  # A's instance is over: again
    assert [(i.reentry_value, i.status) for i in instances(engine)][3:] == [("A", "active"), ("", "active")]


def test_an_instance_goes_on_as_the_profile_its_own_was_merged_into(shop) -> None:  # type: ignore[no-untyped-def]
    engine, source_id, hook = shop
    define(engine, key="cart", entry={"event": "Product Added"}, reentry_key="cart_id",
           steps=[{"id": "checkout", "type": "wait_for_event", "event": "Checkout Started", "timeout": {"days": 1},
                   "arrived": [send_step("thanks", hook, "Thanks")]}])

    def live(**message: object) -> int:
        """Ingest one message as the server's follower does (identity, then the live hooks); its profile."""
        message_id = f"m{next(_ids)}"
        with engine.begin() as conn:
            ingest(conn, source_id=source_id, envelope=Envelope(received_at=datetime.now(UTC)), config=CONFIG,
                   messages=[{"messageId": message_id, **message}])
            return conn.execute(select(events.c.profile_id).where(events.c.message_id == message_id)).scalar_one()

    known = live(type="track", userId="u-1", event="Product Added", properties={"cart_id": "B"})
    guest = live(type="track", anonymousId="a-1", event="Product Added", properties={"cart_id": "A"})
    live(type="track", anonymousId="a-1", event="Product Added", properties={"cart_id": "B"})
    survivor = live(type="identify", userId="u-1", anonymousId="a-1")  # one person: the profiles merge
    assert survivor in (known, guest)
    by_cart = {(i.reentry_value, i.status): i for i in instances(engine)}
    assert {i.profile_id for (_, status), i in by_cart.items() if status == "active"} == {survivor}
    assert sorted(by_cart) == [("A", "active"), ("B", "active"), ("B", "exited")], "one cart B goes on, not two"
    live(type="track", userId="u-1", event="Checkout Started")
    assert [m["event"] for m in sent(engine)] == ["Thanks", "Thanks"], "the survivor's event releases both waits"


def test_holdout_is_sticky_never_sent_and_measured(shop) -> None:  # type: ignore[no-untyped-def]
    shares = [stable_fraction("winback", "holdout", pid) < 0.1 for pid in range(1, 20_001)]
    assert abs(sum(shares) / len(shares) - 0.1) < 0.01
    assert shares == [stable_fraction("winback", "holdout", pid) < 0.1 for pid in range(1, 20_001)], "sticky"
    engine, _, hook = shop
    define(engine, key="winback", entry={"event": "Churn Risk"}, holdout=0.5,
           goal={"event": "Order Completed", "within": {"days": 7}}, steps=[send_step("offer", hook)])
    users = [f"w{n}" for n in range(30)]
    for user in users:
        track(shop, user, "Churn Risk", T0)
    first = {i.profile_id: i.holdout for i in instances(engine)}
    assert 5 < sum(first.values()) < 25
    for user in users[:10]:
        track(shop, user, "Churn Risk", minutes(5))  # enter again: the same side
    assert all(first[i.profile_id] == i.holdout for i in instances(engine))
    with engine.connect() as conn:
        pids = {user: find_profile(conn, type="user_id", value=user, entity="users") for user in users}
    assert {m["userId"] for m in sent(engine)} == {u for u in users if not first[pids[u]]}, "holdouts get nothing"
    buyers = users[::2]
    for user in buyers:
        track(shop, user, "Order Completed", minutes(60))
    track(shop, users[1], "Order Completed", T0 + timedelta(days=8))  # outside the window
    with engine.connect() as conn:
        report = lift_report(conn, journey=get_journey(conn, key="winback"))
    entries = [first[pids[u]] for u in users] + [first[pids[u]] for u in users[:10]]
    converted = [first[pids[u]] for u in buyers] + [first[pids[u]] for u in buyers if u in users[:10]]
    assert report.holdout.entries == sum(entries) and report.treated.entries == len(entries) - sum(entries)
    assert report.holdout.conversions == sum(converted)
    assert report.treated.conversions == len(converted) - sum(converted)
    assert report.treated.sends == report.treated.entries and report.holdout.sends == report.holdout.entries
    assert report.absolute_lift == pytest.approx(report.treated.rate - report.holdout.rate)
    low, high = report.absolute_ci
    assert low < report.absolute_lift < high


def test_frequency_cap_and_priority(shop) -> None:  # type: ignore[no-untyped-def]
    engine, _, hook = shop
    define(engine, key="alpha", entry={"event": "Viewed"}, steps=[send_step("a", hook)])
    policy(engine, frequency_caps=[{"destination": hook, "max": 2, "window": {"hours": 24}}])
    for hour in (0, 1, 2, 25):
        track(shop, "ann", "Viewed", minutes(60 * hour))
    assert [status for _, status, _ in sends_log(engine)] == ["sent", "sent", "suppressed", "sent"]
    assert sends_log(engine)[2][2].startswith("frequency_cap")
    assert len(sent(engine)) == 3

    define(engine, key="beta", entry={"event": "Viewed"}, steps=[send_step("b", hook)])
    policy(engine, frequency_caps=[{"max": 1, "window": {"hours": 24}}], priority=["beta"])
    track(shop, "bob", "Viewed", T0)  # one event, two journeys, one slot: beta wins
    policy(engine, frequency_caps=[{"max": 1, "window": {"hours": 24}}], priority=["alpha", "beta"])
    track(shop, "cy", "Viewed", T0)
    log = sends_log(engine)[4:]
    assert sorted(log) == [("a", "sent", None), ("a", "suppressed", "priority: journey 'beta' took the capped slot"),
                           ("b", "sent", None), ("b", "suppressed", "priority: journey 'alpha' took the capped slot")]
    assert [m["userId"] for m in sent(engine)][3:] == ["bob", "cy"]
    with engine.connect() as conn:
        report = lift_report(conn, journey=get_journey(conn, key="alpha"))
    assert report.sends == {"sent": 4, "suppressed": 2} and report.reasons == {"frequency_cap": 1, "priority": 1}


def test_quiet_hours_defer_sends_to_their_end_in_the_profiles_zone(shop) -> None:  # type: ignore[no-untyped-def]
    engine, source_id, hook = shop
    define(engine, key="news", entry={"event": "Viewed"}, steps=[send_step("tell", hook)])
    policy(engine, quiet_hours={"start": "21:00", "end": "08:00", "timezone": "UTC", "timezone_trait": "timezone"})
    with engine.begin() as conn:
        ingest(conn, source_id=source_id, envelope=Envelope(received_at=T0), config=CONFIG, live=False, messages=[
            {"type": "identify", "userId": "kai", "traits": {"timezone": "Asia/Tokyo"}}])
    night = datetime(2026, 3, 10, 22, 30, tzinfo=UTC)  # 07:30 in Tokyo
    track(shop, "ann", "Viewed", night)
    track(shop, "kai", "Viewed", night)
    track(shop, "bo", "Viewed", datetime(2026, 3, 10, 12, tzinfo=UTC))  # daytime: at once
    assert [m["userId"] for m in sent(engine)] == ["bo"]
    assert [(status, reason) for _, status, reason in sends_log(engine)][:2] == [
        ("deferred", "quiet_hours: until 2026-03-11T08:00:00+00:00"),
        ("deferred", "quiet_hours: until 2026-03-10T23:00:00+00:00")]
    assert tick(engine, datetime(2026, 3, 10, 22, 59, tzinfo=UTC)) == 0
    assert tick(engine, datetime(2026, 3, 10, 23, tzinfo=UTC)) == 1
    assert tick(engine, datetime(2026, 3, 11, 7, 59, tzinfo=UTC)) == 0
    assert tick(engine, datetime(2026, 3, 11, 8, tzinfo=UTC)) == 1
    assert [m["userId"] for m in sent(engine)] == ["bo", "kai", "ann"]
    assert all(i.status == "completed" for i in instances(engine))


def test_live_ingestion_enters_and_backfills_do_not(shop) -> None:  # type: ignore[no-untyped-def]
    engine, source_id, hook = shop
    define(engine, key="welcome", entry={"event": "Signed Up"}, steps=[send_step("hi", hook)])
    for user, live in (("old", False), ("new", True)):
        with engine.begin() as conn:
            ingest(conn, source_id=source_id, envelope=Envelope(received_at=T0), config=CONFIG, live=live,
                   messages=[{"type": "track", "userId": user, "event": "Signed Up"}])
    assert [m["userId"] for m in sent(engine)] == ["new"]
    assert len(instances(engine)) == 1


def test_definitions_are_validated_and_versioned(shop) -> None:  # type: ignore[no-untyped-def]
    engine, _, hook = shop
    bad = [({"key": "x", "entry": {"event": "E"}, "steps": []}, "at least 1"),
           ({"key": "x", "entry": {"event": "E"}, "steps": [send_step("s", hook), send_step("s", hook)]},
            "step id 's' is used more than once"),
           ({"key": "x", "entry": {"event": "E"}, "steps": [{"id": "r", "type": "random_split", "branches": [
               {"name": "a", "percent": 50}, {"name": "b", "percent": 40}]}]}, "add up to 100"),
           ({"key": "x", "entry": {"event": "E"}, "holdout": 1, "steps": [send_step("s", hook)]}, "holdout"),
           ({"key": "x", "entry": {"event": "E"}, "steps": [{"id": "d", "type": "delay", "duration": {}}]}, "above 0")]
    for definition, message in bad:
        with pytest.raises(InvalidInput, match=message):
            parse_journey(definition)
    with engine.begin() as conn, pytest.raises(InvalidInput, match="no destination with id 99"):
        save_journey(conn, definition=parse_journey({"key": "x", "entry": {"event": "E"},
                                                     "steps": [send_step("s", 99)]}), now=T0)
    with engine.begin() as conn, pytest.raises(InvalidInput, match="no audience with key 'vip'"):
        save_journey(conn, definition=parse_journey({"key": "x", "entry": {"event": "E", "audience": "vip"},
                                                     "steps": [send_step("s", hook)]}), now=T0)
    # A profile on its way finishes on the version it entered.
    define(engine, key="v", entry={"event": "E"}, steps=[{"id": "d", "type": "delay", "duration": {"minutes": 5}},
                                                         send_step("old", hook)])
    track(shop, "ann", "E", T0)
    define(engine, key="v", entry={"event": "E"}, steps=[send_step("new", hook)])
    track(shop, "bob", "E", T0)
    tick(engine, minutes(5))
    assert [step for step, _, _ in sends_log(engine)] == ["new", "old"]
    assert [i.version for i in instances(engine)] == [1, 2]


def test_audience_filter_on_entry(shop) -> None:  # type: ignore[no-untyped-def]
    from cdp.audiences.membership import recompute
    from cdp.audiences.schemas import parse_audience
    from cdp.audiences.service import save_audience

    engine, source_id, hook = shop
    with engine.begin() as conn:
        ingest(conn, source_id=source_id, envelope=Envelope(received_at=T0), config=CONFIG, live=False, messages=[
            {"type": "identify", "userId": "vip", "traits": {"tier": "gold"}},
            {"type": "identify", "userId": "pleb", "traits": {"tier": "tin"}}])
        save_audience(conn, definition=parse_audience({"key": "gold", "condition": {
            "type": "trait", "trait": "tier", "op": "eq", "value": "gold"}}), now=T0)
        recompute(conn, as_of=T0)
    define(engine, key="vip_only", entry={"event": "Viewed", "audience": "gold"}, steps=[send_step("s", hook)])
    track(shop, "vip", "Viewed", T0)
    track(shop, "pleb", "Viewed", T0)
    assert [m["userId"] for m in sent(engine)] == ["vip"]


# -- a live server: HTTP event in, webhook out -------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def journey_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("serve")
    url = request.getfixturevalue("postgres_databases")() if request.param == "postgresql" else None
    env = {"CDP_DESTINATIONS_ALLOWLIST": "127.0.0.1", "CDP_JOURNEYS_POLL_S": "0.1", "CDP_ATTRIBUTION_IDLE_MS": "20"}
    server = start_server(Settings(home=home / "home", database_url=url), workers=2, log=home / "serve.log", env=env)
    yield server
    server.kill()


def test_live_server_event_to_journey_webhook(journey_server, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    base, admin = journey_server.url, {"Authorization": f"Bearer {journey_server.admin_token}"}
    created = httpx.post(f"{base}/v1/destinations", headers=admin,
                         json={"type": "webhook", "name": "push", "url": receiver.url})
    destination_id = created.json()["data"]["id"]
    journey = {"key": "welcome", "entry": {"event": "Signed Up"}, "holdout": 0, "goal": {
        "event": "Order Completed", "within": {"days": 1}}, "steps": [
        {"id": "pause", "type": "delay", "duration": {"seconds": 0.5}},
        {"id": "hello", "type": "send", "destination": destination_id, "event": "Welcome"}]}
    bad = httpx.post(f"{base}/v1/journeys", headers=admin, json={**journey, "steps": [{"id": "x", "type": "nope"}]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    assert httpx.post(f"{base}/v1/journeys", headers=admin, json=journey).status_code == 201
    assert httpx.post(f"{base}/v1/journeys", headers=admin, json=journey).status_code == 200
    assert httpx.get(f"{base}/v1/journeys", headers={"Authorization": "Bearer nope"}).status_code == 401
    bad_policy = httpx.put(f"{base}/v1/contact-policy", headers=admin, json={"quiet_hours": {"start": "x"}})
    assert bad_policy.status_code == 400
    cap = {"frequency_caps": [{"max": 5, "window": {"hours": 1}}], "priority": ["welcome"]}
    assert httpx.put(f"{base}/v1/contact-policy", headers=admin, json=cap).is_success
    assert httpx.get(f"{base}/v1/contact-policy", headers=admin).json()["data"]["priority"] == ["welcome"]

    track = {"type": "track", "userId": "live-ann", "event": "Signed Up", "messageId": "signup-1",
             "properties": {"plan": "pro"}}
    assert httpx.post(f"{base}/v1/track", json=track, auth=(journey_server.write_key, "")).is_success
    deadline = time.monotonic() + 30
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.05)
    [(headers, body)] = receiver.received
    message = orjson.loads(body)
    assert message["event"] == "Welcome" and message["userId"] == "live-ann"
    assert message["properties"]["journey_context"]["triggering_event"]["messageId"] == "signup-1"
    assert message["properties"]["journey_context"]["triggering_event"]["properties"] == {"plan": "pro"}
    assert headers["Idempotency-Key"] == message["messageId"]
    listed = httpx.get(f"{base}/v1/journeys/welcome", headers=admin).json()["data"]
    assert listed["version"] == 1 and listed["active"] == 0
    report = httpx.get(f"{base}/v1/journeys/welcome/report", headers=admin).json()["data"]
    assert report["treated"]["entries"] == 1 and report["treated"]["sends"] == 1 and report["holdout"]["entries"] == 0
    assert httpx.get(f"{base}/v1/journeys/nope/report", headers=admin).status_code == 404
    assert httpx.delete(f"{base}/v1/journeys/welcome", headers=admin).json()["data"]["deleted"] is True


def test_cli_journeys_contact_policy_and_backfill(settings: Settings, tmp_path: Path) -> None:
    from tests.test_cli import assert_user_error, cdp

    assert cdp(settings, "init").returncode == 0
    assert cdp(settings, "destinations", "create", "out", "--url", "http://93.184.216.34/hook").returncode == 0
    definition = tmp_path / "journey.json"
    definition.write_text(orjson.dumps({"key": "welcome", "entry": {"event": "Signed Up"}, "holdout": 0.1,
                                        "goal": {"event": "Order Completed", "within": {"days": 3}},
                                        "steps": [{"id": "hi", "type": "send", "destination": 1}]}).decode())
    created = cdp(settings, "journeys", "create", "--file", str(definition))
    assert "journey 'welcome' v1 (created)" in created.stdout, created.stdout + created.stderr
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("\n".join(orjson.dumps({"type": "track", "userId": f"u{n}", "event": "Signed Up",
                                                   "timestamp": "2026-01-01T00:00:00Z"}).decode() for n in range(3)))
    assert cdp(settings, "import", str(events_file), "--backfill").returncode == 0
    assert "welcome" in cdp(settings, "journeys", "list").stdout
    report = cdp(settings, "journeys", "report", "welcome")
    assert report.returncode == 0 and "entries" in report.stdout and "0 entries" in report.stdout, report.stdout
    policy_file = tmp_path / "policy.json"
    policy_file.write_text('{"frequency_caps": [{"max": 2, "window": {"hours": 24}}]}')
    assert cdp(settings, "contact-policy", "set", "--file", str(policy_file)).returncode == 0
    assert '"max": 2' in cdp(settings, "contact-policy", "show").stdout
    policy_file.write_text('{"frequency_caps": [{"max": -1, "window": {"hours": 24}}]}')
    assert_user_error(cdp(settings, "contact-policy", "set", "--file", str(policy_file)), "greater than or equal to 0")
    assert "deleted" in cdp(settings, "journeys", "delete", "welcome").stdout
    assert_user_error(cdp(settings, "journeys", "show", "welcome"), "no journey with key 'welcome'")


def test_two_postgresql_workers_take_turns_at_one_profiles_cap(engine: Engine) -> None:
    """Each counts the sends already made before adding its own: without turns, two transactions
    would both see the cap's last slot free and both send."""
    import threading

    from cdp.journeys.policy import Intent, arbitrate

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's single writer already runs them one after the other")
    policy = parse_policy({"frequency_caps": [{"max": 1, "window": {"hours": 24}}]})
    intent = Intent(journey_key="welcome", profile_id=7, destination_id=1, payload=None)
    now = datetime.now(UTC)
    decided: list[object] = []

    def second_worker() -> None:
        with engine.begin() as conn:
            decided.extend(arbitrate(conn, policy, [intent], now=now))

    with engine.begin() as conn:
        assert arbitrate(conn, policy, [intent], now=now) == [(intent, None)]
        other = threading.Thread(target=second_worker, daemon=True)
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive(), "the second worker counted the sends while the first was still deciding"
    other.join(timeout=30)
    assert decided == [(intent, None)]  # no send was recorded here: the slot is still free once it gets its turn
