"""Identity resolution and traits through real ingestion, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.errors import Conflict
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.identity.schemas import IdentityRules
from cdp.identity.service import find_profile, merge_log, split
from cdp.profiles.traits import current_traits
from cdp.store.tables import PURCHASE_FACT_EVENTS, events, profile_links, profiles, purchase_facts

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
CONFIG = IngestConfig.from_settings(Settings())
_ids = itertools.count()


@pytest.fixture
def send(engine):  # type: ignore[no-untyped-def]
    """Ingest messages as one request each (or one batch), at event time ``at``."""
    with engine.begin() as conn:
        source_id = create_source(conn, name="app", now=T0)[0].id

    def send(*messages, at=T0, received=None):  # type: ignore[no-untyped-def]
        batch = [{"messageId": f"m{next(_ids)}", "timestamp": at.isoformat(), **m} for m in messages]
        with engine.begin() as conn:
            ingest(conn, source_id=source_id, messages=batch, envelope=Envelope(received_at=received or T0),
                   config=CONFIG)
        return [m["messageId"] for m in batch]

    return send


def profile_of(engine, type_, value):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return find_profile(conn, type=type_, value=value)


def events_of(engine, profile_id):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return sorted(conn.execute(select(events.c.message_id).where(events.c.profile_id == profile_id)).scalars())


def traits_of(engine, profile_id):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {row.name: row.value for row in current_traits(conn, profile_id=profile_id)}


def test_anonymous_browsing_on_two_devices_stitches_into_one_person(engine, send) -> None:  # type: ignore[no-untyped-def]
    phone = send({"type": "track", "anonymousId": "phone", "event": "Product Viewed"})
    laptop = send({"type": "page", "anonymousId": "laptop", "name": "Home"})
    assert profile_of(engine, "anonymous_id", "phone") != profile_of(engine, "anonymous_id", "laptop")
    login1 = send({"type": "identify", "anonymousId": "phone", "userId": "u1", "traits": {"email": "Ann@X.io"}})
    login2 = send({"type": "identify", "anonymousId": "laptop", "userId": "u1"})
    person = profile_of(engine, "user_id", "u1")
    assert person == profile_of(engine, "anonymous_id", "phone") == profile_of(engine, "anonymous_id", "laptop")
    assert profile_of(engine, "email", "ann@x.io") == person
    assert events_of(engine, person) == sorted(phone + laptop + login1 + login2)
    with engine.connect() as conn:
        log = merge_log(conn, profile_id=person)
    assert [(m.outcome, m.identifier_type, m.message_id) for m in log] == [("merged", "anonymous_id", login2[0])]
    assert "identify" in log[0].rule and "anonymous_id" in log[0].rule


def test_alias_links_the_previous_id(engine, send) -> None:  # type: ignore[no-untyped-def]
    send({"type": "track", "anonymousId": "visitor-7", "event": "Signed Up"})
    send({"type": "alias", "previousId": "visitor-7", "userId": "u7"})
    assert profile_of(engine, "user_id", "u7") == profile_of(engine, "anonymous_id", "visitor-7")


def test_shared_device_with_two_users_is_not_merged(engine, send) -> None:  # type: ignore[no-untyped-def]
    send({"type": "identify", "anonymousId": "kiosk", "userId": "alice"})
    send({"type": "identify", "anonymousId": "kiosk", "userId": "bob"}, at=T0 + timedelta(hours=1))
    alice, bob = profile_of(engine, "user_id", "alice"), profile_of(engine, "user_id", "bob")
    assert alice != bob, "user_id may have one value per profile: the shared device must not glue them"
    assert profile_of(engine, "anonymous_id", "kiosk") == alice
    with engine.connect() as conn:
        [refused] = merge_log(conn, profile_id=bob)
    assert refused.outcome == "refused" and "user_id limit 1 ever" in refused.rule
    assert (refused.winner_id, refused.loser_id, refused.identifier_value) == (bob, alice, "kiosk")


def test_anonymous_id_limit_per_week(engine, send) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):
        send({"type": "identify", "anonymousId": f"device-{n}", "userId": "u"}, at=T0 + timedelta(hours=n))
    send({"type": "identify", "anonymousId": "device-5", "userId": "u"}, at=T0 + timedelta(hours=6))
    assert profile_of(engine, "anonymous_id", "device-5") != profile_of(engine, "user_id", "u")
    send({"type": "identify", "anonymousId": "device-6", "userId": "u"}, at=T0 + timedelta(days=8))
    assert profile_of(engine, "anonymous_id", "device-6") == profile_of(engine, "user_id", "u")


@pytest.mark.parametrize("placeholder", ["0", "-1", "null", "NULL", "anonymous", "undefined", "00000000-0000", " "])
def test_placeholder_values_never_link_people(engine, send, placeholder) -> None:  # type: ignore[no-untyped-def]
    send({"type": "identify", "userId": "a", "anonymousId": placeholder},
         {"type": "identify", "userId": "b", "anonymousId": placeholder})
    assert profile_of(engine, "user_id", "a") != profile_of(engine, "user_id", "b")
    assert profile_of(engine, "anonymous_id", placeholder) is None


def test_blocked_values_are_configurable() -> None:
    rules = IdentityRules.from_settings(Settings(identity_blocked_values=["^guest$"]))
    assert rules.is_blocked("guest") and not rules.is_blocked("null")


def test_late_identify_does_not_overwrite_a_newer_trait(engine, send) -> None:  # type: ignore[no-untyped-def]
    send({"type": "identify", "userId": "u", "traits": {"plan": "pro", "city": "Oslo"}}, at=T0)
    send({"type": "identify", "userId": "u", "traits": {"plan": "free"}}, at=T0 - timedelta(days=30),
         received=T0 + timedelta(days=1))  # an old identify imported late
    person = profile_of(engine, "user_id", "u")
    assert traits_of(engine, person) == {"plan": "pro", "city": "Oslo"}
    send({"type": "identify", "userId": "u", "context": {"traits": {"plan": "team", "seats": 3}},
          "traits": {"seats": 5}}, at=T0 + timedelta(days=2))
    assert traits_of(engine, person) == {"plan": "team", "city": "Oslo", "seats": 5}


def test_group_calls_build_account_profiles(engine, send) -> None:  # type: ignore[no-untyped-def]
    send({"type": "group", "userId": "u1", "groupId": "acme", "traits": {"name": "Acme", "email": "hq@acme.io"}},
         {"type": "group", "userId": "u2", "groupId": "acme", "traits": {"plan": "enterprise"}})
    with engine.connect() as conn:
        account = find_profile(conn, type="group_id", value="acme", entity="accounts")
        members = set(conn.execute(select(profile_links.c.profile_id).where(profile_links.c.linked_id == account)).scalars())
    assert members == {profile_of(engine, "user_id", "u1"), profile_of(engine, "user_id", "u2")}
    assert traits_of(engine, account) == {"name": "Acme", "email": "hq@acme.io", "plan": "enterprise"}
    assert profile_of(engine, "email", "hq@acme.io") is None, "an account's email is not a person's id"


def test_custom_entities_come_from_config(settings: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    config = IngestConfig.from_settings(settings.model_copy(update={"entities": {"households": "household_id"}}))
    with engine.begin() as conn:
        source_id = create_source(conn, name="app", now=T0)[0].id
        ingest(conn, source_id=source_id, envelope=Envelope(received_at=T0), config=config, messages=[
            {"type": "track", "userId": "u1", "event": "Joined", "properties": {"household_id": "h9"}}])
        household = find_profile(conn, type="household_id", value="h9", entity="households")
        assert household is not None
        assert conn.execute(select(profiles.c.entity).where(profiles.c.id == household)).scalar() == "households"


def test_split_restores_both_profiles_with_their_own_events_and_traits(engine, send) -> None:  # type: ignore[no-untyped-def]
    ann = send({"type": "identify", "userId": "ann", "anonymousId": "a-dev", "traits": {"email": "ann@x.io", "plan": "pro"}},
               {"type": "track", "userId": "ann", "event": "Ann Bought"})
    ben_anon = send({"type": "track", "anonymousId": "b-dev", "event": "Ben Browsed"},
                    {"type": "identify", "anonymousId": "b-dev", "traits": {"email": "ben@x.io", "plan": "free"}},
                    at=T0 + timedelta(minutes=1))
    # Ben types Ann's email on his device: the email links his anonymous profile to Ann. Bad merge.
    bad = send({"type": "identify", "anonymousId": "b-dev", "traits": {"email": "ann@x.io"}},
               at=T0 + timedelta(minutes=2))
    person = profile_of(engine, "user_id", "ann")
    assert profile_of(engine, "anonymous_id", "b-dev") == person
    with engine.connect() as conn:
        [merge] = [m for m in merge_log(conn, profile_id=person) if m.outcome == "merged"]
    assert merge.message_id == bad[0] and merge.identifier_value == "b-dev"
    assert merge.rule == "identify call carried email 'ann@x.io' and anonymous_id 'b-dev' of another profile"

    with engine.begin() as conn:
        split(conn, merge_id=merge.id, rules=CONFIG.identity, now=T0 + timedelta(hours=1))
    ben = profile_of(engine, "anonymous_id", "b-dev")
    assert ben != person and profile_of(engine, "user_id", "ann") == person
    assert profile_of(engine, "email", "ben@x.io") == ben
    # The message that caused the merge names Ann's email, its highest-priority id: it stays hers.
    assert events_of(engine, person) == sorted(ann + bad)
    assert events_of(engine, ben) == sorted(ben_anon)
    assert traits_of(engine, person) == {"email": "ann@x.io", "plan": "pro"}
    assert traits_of(engine, ben) == {"email": "ben@x.io", "plan": "free"}
    with engine.begin() as conn, pytest.raises(Conflict):
        split(conn, merge_id=merge.id, rules=CONFIG.identity, now=T0)


def test_retried_identify_records_its_traits_once(engine, send) -> None:  # type: ignore[no-untyped-def]
    message = {"type": "identify", "userId": "u", "traits": {"x": 1}, "messageId": "same"}
    send(message)
    send(message)
    from cdp.store.tables import trait_changes

    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(trait_changes)).scalar() == 1


def test_purchase_facts_mirror_the_orders_through_merge_split_and_delete(engine, send) -> None:  # type: ignore[no-untyped-def]
    """The purchase features read ``purchase_facts``: it must hold each order with its current profile."""

    def mirrored() -> dict[int, tuple[int | None, dict]]:
        with engine.connect() as conn:
            rows = conn.execute(select(purchase_facts.c.event_id, purchase_facts.c.profile_id, purchase_facts.c.properties))
            return {row.event_id: (row.profile_id, row.properties) for row in rows}

    def orders() -> dict[int, tuple[int | None, dict]]:
        with engine.connect() as conn:
            rows = conn.execute(select(events.c.id, events.c.profile_id, events.c.payload)
                                .where(events.c.type == "track", events.c.event.in_(PURCHASE_FACT_EVENTS)))
            return {row.id: (row.profile_id, row.payload["properties"]) for row in rows}

    order = {"type": "track", "event": "Order Completed"}
    send({**order, "userId": "ann", "properties": {"revenue": 10.5}})
    send({**order, "anonymousId": "b-dev", "properties": {"products": [{"price": 2, "category": "Books"}]}},
         {"type": "track", "anonymousId": "b-dev", "event": "Product Viewed", "properties": {"price": 2}},
         {"type": "identify", "anonymousId": "b-dev", "traits": {"email": "ben@x.io"}}, at=T0 + timedelta(minutes=1))
    ann, ben = profile_of(engine, "user_id", "ann"), profile_of(engine, "anonymous_id", "b-dev")
    assert ann != ben
    assert mirrored() == orders() and sorted(p for p, _ in mirrored().values()) == sorted([ann, ben])

    send({"type": "identify", "anonymousId": "b-dev", "traits": {"email": "ann@x.io"}}, {"type": "identify",
         "userId": "ann", "traits": {"email": "ann@x.io"}}, at=T0 + timedelta(minutes=2))
    merged = profile_of(engine, "anonymous_id", "b-dev")
    assert merged == profile_of(engine, "user_id", "ann")
    assert mirrored() == orders() and {p for p, _ in mirrored().values()} == {merged}

    with engine.connect() as conn:
        [merge] = [m for m in merge_log(conn, profile_id=merged) if m.outcome == "merged"]
    with engine.begin() as conn:
        split(conn, merge_id=merge.id, rules=CONFIG.identity, now=T0 + timedelta(hours=1))
    assert mirrored() == orders() and len({p for p, _ in mirrored().values()}) == 2

    ann = profile_of(engine, "user_id", "ann")
    with engine.begin() as conn:
        conn.execute(delete(events).where(events.c.profile_id == ann))
    assert mirrored() == orders() and len(mirrored()) == 1
