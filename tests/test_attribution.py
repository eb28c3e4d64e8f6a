"""Events the Tracking API stores pending, attributed to profiles in bulk by the follower."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.events import attribution
from cdp.events.attribution import AttributionFollower, attribute_pending, count_pending
from cdp.events.ingest import LIVE_HOOKS, IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.identity.service import find_profile
from cdp.privacy.regulations import create_regulation, run_regulation
from cdp.store.group_commit import GroupCommitter
from cdp.store.tables import events, profile_traits, trait_changes
from tests.conftest import LiveServer, wait_until

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
CONFIG = IngestConfig.from_settings(Settings())


def _messages(user: str) -> list[dict]:  # type: ignore[type-arg]
    at = NOW - timedelta(hours=1)
    return [
        {"type": "track", "anonymousId": f"{user}-phone", "event": "Browsed", "messageId": f"{user}-1",
         "timestamp": at.isoformat()},
        {"type": "identify", "anonymousId": f"{user}-phone", "userId": user, "traits": {"plan": "pro"},
         "messageId": f"{user}-2", "timestamp": (at + timedelta(minutes=1)).isoformat()},
        {"type": "track", "anonymousId": f"{user}-laptop", "event": "Browsed", "messageId": f"{user}-3",
         "timestamp": (at + timedelta(minutes=2)).isoformat()},
        {"type": "identify", "anonymousId": f"{user}-laptop", "userId": user, "traits": {"plan": "max"},
         "messageId": f"{user}-4", "timestamp": (at + timedelta(minutes=3)).isoformat()},
    ]


def _store(conn, source_id: int, messages: list[dict], *, defer: bool) -> None:  # type: ignore[no-untyped-def,type-arg]
    ingest(conn, source_id=source_id, messages=messages, envelope=Envelope(received_at=NOW), config=CONFIG,
           defer_attribution=defer)


def _drain(engine) -> int:  # type: ignore[no-untyped-def]
    taken = 0
    while batch := _attribute(engine, limit=3):
        taken += batch
    return taken


def _attribute(engine, *, limit: int) -> int:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        return attribute_pending(conn, config=CONFIG, now=NOW, limit=limit)


@pytest.fixture
def source_id(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        return create_source(conn, name="web", now=NOW)[0].id


def _profile_of_events(conn) -> dict[str, int | None]:  # type: ignore[no-untyped-def]
    return dict(conn.execute(select(events.c.message_id, events.c.profile_id)).tuples().all())


def test_deferred_events_are_stored_pending_then_attributed_as_inline_ingestion_would(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        _store(conn, source_id, _messages("ann"), defer=True)
        _store(conn, source_id, _messages("ann"), defer=True)  # an SDK retry: stored once
        assert count_pending(conn) == 4
        assert set(_profile_of_events(conn).values()) == {None}
        assert conn.execute(select(func.count()).select_from(trait_changes)).scalar() == 0
    assert _drain(engine) == 4  # in batches smaller than the backlog, oldest first
    with engine.begin() as conn:
        _store(conn, source_id, _messages("bob"), defer=False)
    with engine.connect() as conn:
        assert count_pending(conn) == 0
        attributed = _profile_of_events(conn)
        ann = find_profile(conn, type="user_id", value="ann")
        bob = find_profile(conn, type="user_id", value="bob")
        assert ann is not None and bob is not None and ann != bob
        # Both devices' anonymous browsing joined the person, for the deferred and the inline path alike.
        assert {attributed[f"ann-{n}"] for n in range(1, 5)} == {ann}
        assert {attributed[f"bob-{n}"] for n in range(1, 5)} == {bob}
        plans = dict(conn.execute(select(profile_traits.c.profile_id, profile_traits.c.value)
                                  .where(profile_traits.c.name == "plan")).tuples().all())
        assert plans == {ann: "max", bob: "max"}
        # The retry recorded no second trait change.
        assert conn.execute(select(func.count()).select_from(trait_changes)
                            .where(trait_changes.c.profile_id == ann)).scalar() == 2


def test_live_hooks_fire_when_deferred_events_are_attributed(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    fired: list[tuple[int, list[int | None]]] = []
    LIVE_HOOKS.append(lambda conn, source, rows: fired.append((source, [row["profile_id"] for row in rows])))
    try:
        with engine.begin() as conn:
            _store(conn, source_id, _messages("cy")[:2], defer=True)
        assert fired == [], "nothing fires before the events have a profile"
        _drain(engine)
    finally:
        LIVE_HOOKS.pop()
    with engine.connect() as conn:
        cy = find_profile(conn, type="user_id", value="cy")
    assert [source for source, _ in fired] == [source_id] * len(fired)
    assert [profile for _, profiles in fired for profile in profiles] == [cy, cy]


def test_events_of_a_suppressed_subject_are_accepted_and_dropped(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        regulation = create_regulation(conn, regulation_type="SUPPRESS_ONLY", subject_type="USER_ID", subject_ids=["dan"], now=NOW)
    run_regulation(engine, regulation, now=NOW)
    with engine.begin() as conn:
        _store(conn, source_id, [{"type": "track", "userId": "dan", "event": "E", "messageId": "d1"},
                                 {"type": "track", "userId": "eve", "event": "E", "messageId": "e1"}], defer=True)
    _drain(engine)
    with engine.connect() as conn:
        assert sorted(_profile_of_events(conn)) == ["e1"]


AT_INGEST = replace(CONFIG, attribute_at_ingest=True)


def _pending_of_events(conn) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    return dict(conn.execute(select(events.c.message_id, events.c.pending)).tuples().all())


def test_a_returning_persons_calls_are_attributed_as_they_are_stored(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    fired: list[str] = []
    LIVE_HOOKS.append(lambda conn, source, rows: fired.extend(row["message_id"] for row in rows))
    try:
        with engine.begin() as conn:
            _store(conn, source_id, _messages("ann") + _messages("bob"), defer=False)
            fired.clear()
            deferred = ingest(conn, source_id=source_id, envelope=Envelope(received_at=NOW), config=AT_INGEST,
                              defer_attribution=True, messages=[
                {"type": "track", "anonymousId": "ann-phone", "event": "Browsed", "messageId": "known-device"},
                {"type": "page", "userId": "ann", "anonymousId": "ann-laptop", "name": "Home", "messageId": "known-both"},
                {"type": "screen", "userId": "ann", "name": "Cart", "messageId": "known-user"},
                {"type": "track", "anonymousId": "ann-tablet", "event": "Browsed", "messageId": "new-device"},
                {"type": "track", "userId": "ann", "anonymousId": "bob-phone", "event": "E", "messageId": "two-people"},
                {"type": "identify", "userId": "ann", "traits": {"plan": "team"}, "messageId": "traits"},
                {"type": "track", "userId": "ann", "event": "E", "messageId": "account",
                 "context": {"externalIds": [{"type": "org_id", "id": "acme", "collection": "accounts"}]}},
                {"type": "track", "event": "E", "anonymousId": "null", "messageId": "nobody"},
            ]).deferred
            # An SDK's retry of a message attributed at once is neither stored nor fired again.
            ingest(conn, source_id=source_id, envelope=Envelope(received_at=NOW), config=AT_INGEST,
                   defer_attribution=True,
                   messages=[{"type": "track", "anonymousId": "ann-phone", "event": "Browsed", "messageId": "known-device"}])
            ann = find_profile(conn, type="user_id", value="ann")
            profile_of, pending = _profile_of_events(conn), _pending_of_events(conn)
    finally:
        LIVE_HOOKS.pop()
    attributed = ["known-device", "known-both", "known-user"]
    assert fired == attributed, "live hooks ran in the request's transaction, on those only"
    assert {message: profile_of[message] for message in attributed} == dict.fromkeys(attributed, ann)
    left = ["new-device", "two-people", "traits", "account", "nobody"]  # what only the follower may resolve
    assert [row["message_id"] for row in deferred] == left
    assert [message for message, is_pending in pending.items() if is_pending] == left
    assert all(profile_of[message] is None for message in left)


def test_a_failing_live_hook_leaves_calls_attributed_at_ingestion_to_the_follower(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    def poisoned(conn, source, rows) -> None:  # type: ignore[no-untyped-def]
        raise ValueError("a bug on a strange message")

    with engine.begin() as conn:
        _store(conn, source_id, _messages("fay"), defer=False)
    LIVE_HOOKS.append(poisoned)
    try:
        with engine.begin() as conn:  # stored and committed all the same: nothing accepted is lost
            deferred = ingest(conn, source_id=source_id, envelope=Envelope(received_at=NOW), config=AT_INGEST,
                              defer_attribution=True,
                              messages=[{"type": "track", "userId": "fay", "event": "E", "messageId": "strange"}]).deferred
    finally:
        LIVE_HOOKS.pop()
    assert [row["message_id"] for row in deferred] == ["strange"]
    with engine.connect() as conn:
        assert _pending_of_events(conn)["strange"] and _profile_of_events(conn)["strange"] is None
    _drain(engine)
    with engine.connect() as conn:
        assert _profile_of_events(conn)["strange"] == find_profile(conn, type="user_id", value="fay")


def test_a_suppressed_persons_calls_are_left_to_the_follower_which_drops_them(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        _store(conn, source_id, _messages("dan"), defer=False)
        regulation = create_regulation(conn, regulation_type="SUPPRESS_ONLY", subject_type="USER_ID",
                                       subject_ids=["dan"], now=NOW)
    run_regulation(engine, regulation, now=NOW)
    with engine.begin() as conn:
        # dan's devices are his too: the suppression reaches them across the identity graph.
        ingest(conn, source_id=source_id, envelope=Envelope(received_at=NOW), config=AT_INGEST, defer_attribution=True,
               messages=[{"type": "track", "anonymousId": "dan-phone", "event": "E", "messageId": "after"}])
        assert [message for message, is_pending in _pending_of_events(conn).items() if is_pending] == ["after"]
    _drain(engine)
    with engine.connect() as conn:
        assert sorted(_profile_of_events(conn)) == ["dan-1", "dan-2", "dan-3", "dan-4"], "kept from before, not after"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_merge_waits_for_a_request_that_attributed_to_its_loser(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    """The request holds the profile it attributed to (shared) until it commits, so a merge
    that moves that profile's events away moves this one too, instead of missing it."""
    with engine.begin() as conn:
        _store(conn, source_id, [{"type": "identify", "userId": "wes", "messageId": "w1"},
                                 {"type": "track", "anonymousId": "wes-phone", "event": "E", "messageId": "p1"}],
               defer=False)
        wes, phone = (find_profile(conn, type=kind, value=value)
                      for kind, value in (("user_id", "wes"), ("anonymous_id", "wes-phone")))
    assert wes != phone
    merged = threading.Event()
    with engine.begin() as request:
        ingest(request, source_id=source_id, envelope=Envelope(received_at=NOW), config=AT_INGEST,
               defer_attribution=True,
               messages=[{"type": "track", "anonymousId": "wes-phone", "event": "E", "messageId": "late"}])
        assert _profile_of_events(request)["late"] == phone

        def merge() -> None:
            with engine.begin() as conn:
                _store(conn, source_id, [{"type": "identify", "userId": "wes", "anonymousId": "wes-phone",
                                          "messageId": "login"}], defer=False)
            merged.set()

        merger = threading.Thread(target=merge)
        merger.start()
        assert not merged.wait(0.5), "the merge waits for the request"
    merger.join(10)
    assert merged.is_set()
    with engine.connect() as conn:
        assert set(_profile_of_events(conn).values()) == {wes}


def test_the_api_attributes_at_ingest_by_default_on_postgresql_only() -> None:
    assert not IngestConfig.from_settings(Settings()).attribute_at_ingest
    postgresql = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1/cdp")
    assert IngestConfig.from_settings(postgresql).attribute_at_ingest
    assert not IngestConfig.from_settings(postgresql.model_copy(update={"attribution_at_ingest": False})).attribute_at_ingest
    assert IngestConfig.from_settings(Settings(attribution_at_ingest=True)).attribute_at_ingest


# A bug of ours, and a refusal of the store (which a retry only repeats: it once held up every
# event after it, retried for ever as if the store were down).
POISONS = [ValueError("a bug on a strange message"),
           IntegrityError("INSERT INTO identities ...", {}, Exception("UNIQUE constraint failed"))]


@pytest.mark.parametrize("poison", POISONS, ids=["bug", "store_refusal"])
def test_the_follower_attributes_in_the_background_and_gets_past_an_event_it_cannot_resolve(engine, source_id, poison) -> None:  # type: ignore[no-untyped-def]
    def poisoned(conn, source, rows) -> None:  # type: ignore[no-untyped-def]
        if any(row["message_id"] == "bad" for row in rows):
            raise poison

    LIVE_HOOKS.append(poisoned)
    committer = GroupCommitter.for_store(engine)
    follower = AttributionFollower(committer, CONFIG, batch=50, lag_s=0.0, idle_s=0.0, poll_s=0.02,
                                   orphan_after_s=0.0).start()
    try:
        with engine.begin() as conn:
            _store(conn, source_id, [{"type": "track", "userId": f"u{n}", "event": "E", "messageId": f"m{n}"}
                                     for n in range(20)] + [{"type": "track", "userId": "z", "event": "E",
                                                             "messageId": "bad"}], defer=True)
        follower.notify()
        done = threading.Event()
        for _ in range(200):
            with engine.connect() as conn:
                if count_pending(conn) == 0:
                    done.set()
                    break
            done.wait(0.05)
        assert done.is_set(), "the follower did not drain the backlog"
    finally:
        follower.stop()
        committer.close()
        LIVE_HOOKS.remove(poisoned)
    with engine.connect() as conn:
        attributed = _profile_of_events(conn)
    assert attributed["bad"] is None, "left stored, without a profile"
    assert all(attributed[f"m{n}"] is not None for n in range(20))


def test_the_follower_yields_a_saturated_writer_to_requests_and_takes_a_free_one_at_once(engine) -> None:  # type: ignore[no-untyped-def]
    """While the writer is busy with requests (a burst), they come first: after a batch that held it
    for ``w`` seconds, attribution waits until it has had only ``share`` of the time since. With
    the writer free it never waits on them, even behind, even while requests keep coming."""
    committer = GroupCommitter(engine, max_units=1, writers=1)
    follower = AttributionFollower(committer, CONFIG, batch=50, lag_s=0.0, idle_s=10.0, share=0.1)
    follower.notify()  # a request just stored events (and the API stays busy: idle_s is long)
    follower._worked = 0.05
    at = time.monotonic()  # the last batch started as the events arrived
    assert follower._due(behind=True, last_batch=at) == at
    assert follower._due(behind=False, last_batch=at) == at
    release = threading.Event()
    held = committer.submit(lambda conn: release.wait(5))  # the writer is busy with a request
    try:
        for _ in range(100):
            if committer.saturated():
                break
            release.wait(0.01)
        assert committer.saturated()
        assert follower._due(behind=True, last_batch=at) == pytest.approx(at + 0.5)
        assert follower._due(behind=False, last_batch=at) == pytest.approx(at + 0.5)
    finally:
        release.set()
        held.result()
        committer.close()


def test_the_server_attributes_what_the_api_acknowledged(live_server: LiveServer) -> None:
    user = f"f-{uuid.uuid4().hex[:8]}"
    answer = httpx.post(f"{live_server.url}/v1/batch", json={"batch": _messages(user)}, auth=(live_server.write_key, ""))
    assert answer.status_code == 200
    live_server.wait_attributed()
    assert httpx.get(f"{live_server.url}/health").json()["attribution_backlog"] == 0
    traits = httpx.get(f"{live_server.url}/v1/profiles/anonymous_id:{user}-phone/traits",
                       headers={"authorization": f"Bearer {live_server.admin_token}"})
    assert traits.status_code == 200 and traits.json()["traits"] == {"plan": "max"}


def test_the_backlog_is_counted_from_the_pending_index_on_sqlite(engine) -> None:  # type: ignore[no-untyped-def]
    """``/health`` and the follower count pending events often: over a big store a full scan of the
    events table (SQLite's plan when the query does not repeat the partial index's term) piles up."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's rule for partial indexes")
    issued: list[str] = []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.set_trace_callback(issued.append)
        assert count_pending(conn) == 0
        raw.set_trace_callback(None)
        (statement,) = [sql for sql in issued if "count(" in sql]
        plan = " ".join(str(row[-1]) for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}"))
    assert "ix_events_pending" in plan, plan


def _handed_over(conn, source_id: int, messages: list[dict], *, received_at: datetime = NOW) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """Store ``messages`` pending as the Tracking API does; the rows it hands to the follower."""
    return ingest(conn, source_id=source_id, messages=messages, envelope=Envelope(received_at=received_at),
                  config=CONFIG, defer_attribution=True).deferred


def test_stored_rows_carry_the_ids_the_store_gave_them(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        first = _handed_over(conn, source_id, _messages("ann")[:2])
        # An SDK retry of one message beside a new one: the retried one is not stored again.
        again = _handed_over(conn, source_id, [_messages("ann")[1], _messages("ann")[2]])
        stored = {message_id: event_id for event_id, message_id in conn.execute(
            select(events.c.id, events.c.message_id)).tuples()}
    assert [row["id"] for row in first] == [stored["ann-1"], stored["ann-2"]]
    assert "id" not in again[0], "the retry stored nothing"
    assert [row.get("id") for row in again[1:]] == [stored["ann-3"]]


def _follower(engine, **options):  # type: ignore[no-untyped-def]
    """A follower (not started yet) and the committer it writes through."""
    committer = GroupCommitter.for_store(engine)
    return committer, AttributionFollower(committer, CONFIG, batch=50, lag_s=0.0, idle_s=0.0, poll_s=0.02, **options)


def _run_until_drained(engine, committer, follower, *, timeout_s: float = 10) -> None:  # type: ignore[no-untyped-def]
    """Run the follower until nothing is pending (or ``timeout_s``), then stop it; callers assert."""
    follower.start()
    try:
        wait_until(lambda: _pending(engine) == 0, timeout_s=timeout_s)
    finally:
        follower.stop()
        committer.close()


def _pending(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return count_pending(conn)


@pytest.mark.parametrize("queue_bytes", [10**6, 0], ids=["kept", "read_back"])
def test_the_follower_attributes_rows_handed_over_once(engine, source_id, queue_bytes) -> None:  # type: ignore[no-untyped-def]
    """Rows handed over are attributed as inline ingestion would, whether the follower kept them or
    only their ids (over its memory); those attributed meanwhile (here by the store's backlog) are
    not attributed again: their identify traits would be logged twice."""
    with engine.begin() as conn:
        done = _handed_over(conn, source_id, _messages("ann"))
        rows = _handed_over(conn, source_id, _messages("bob"))
    assert _attribute(engine, limit=4) == 4 and _pending(engine) == 4  # ann's, from the store
    committer, follower = _follower(engine, queue_bytes=queue_bytes, orphan_after_s=3600)
    follower.notify(done + rows)
    _run_until_drained(engine, committer, follower)
    with engine.connect() as conn:
        attributed = _profile_of_events(conn)
        logged = conn.execute(select(func.count()).select_from(trait_changes)).scalar()
        bob = find_profile(conn, type="user_id", value="bob")
        ann = find_profile(conn, type="user_id", value="ann")
    assert logged == 4, "two identify calls each for ann and bob, each logged once"
    assert bob is not None and ann is not None and bob != ann
    assert {attributed[f"bob-{n}"] for n in range(1, 5)} == {bob}
    assert {attributed[f"ann-{n}"] for n in range(1, 5)} == {ann}


def test_events_nobody_handed_over_are_taken_once_they_have_waited(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    """A server killed before its follower got to them: another takes them up from the store, but
    only once they have waited ``orphan_after_s`` (before, their own server's follower has them)."""
    with engine.begin() as conn:
        _handed_over(conn, source_id, _messages("ann"), received_at=datetime.now(UTC))
    _run_until_drained(engine, *_follower(engine, orphan_after_s=3600), timeout_s=0.3)  # it looked several times
    assert _pending(engine) == 4
    _run_until_drained(engine, *_follower(engine, orphan_after_s=0.1))
    with engine.connect() as conn:
        ann = find_profile(conn, type="user_id", value="ann")
        assert ann is not None and set(_profile_of_events(conn).values()) == {ann}


def test_rows_handed_over_come_before_a_backlog_of_others_in_the_store(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    """A follower working through events nobody handed over goes back to its own as soon as it has
    some: in a burst, the store's backlog is mostly other followers' rows, and a follower that kept
    taking those (it did, while its batches were full) left its own queue, and their work, undone."""
    old = datetime.now(UTC) - timedelta(minutes=1)
    with engine.begin() as conn:
        for n in range(4):  # four batches' worth of another server's events, waiting long enough to be taken
            _handed_over(conn, source_id, _messages(f"other{n}"), received_at=old)
        ours = _handed_over(conn, source_id, _messages("ours"))
    committer = GroupCommitter.for_store(engine)
    follower = AttributionFollower(committer, CONFIG, batch=4, lag_s=0.0, idle_s=0.0, poll_s=0.02, orphan_after_s=1)
    batches: list[list[str]] = []

    def record(_conn, _source, rows) -> None:  # type: ignore[no-untyped-def]
        batches.append(sorted({row["message_id"].rsplit("-", 1)[0] for row in rows}))
        if len(batches) == 1:
            follower.notify(ours)  # our API stored events while the first batch of others was attributed

    LIVE_HOOKS.append(record)
    try:
        _run_until_drained(engine, committer, follower)
    finally:
        LIVE_HOOKS.pop()
    assert batches[:2] == [["other0"], ["ours"]], batches
    assert sorted(name for batch in batches for name in batch) == sorted(["ours", *(f"other{n}" for n in range(4))])


def test_rows_past_the_queue_are_read_back_from_the_store_after_those_queued(engine, source_id, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A backlog longer than the follower queues (millions of events) is not held in memory: the
    rest stay in the store, and the follower reads them back once it is through the queue."""
    monkeypatch.setattr(attribution, "QUEUE_ENTRIES", 2)
    with engine.begin() as conn:
        queued = _handed_over(conn, source_id, _messages("ann"))
        left = _handed_over(conn, source_id, _messages("bob"))
    committer, follower = _follower(engine, orphan_after_s=3600)  # only the overflow reads the store here
    follower.notify(queued)
    follower.notify(left)  # past the queue: left to the store
    assert len(follower._queue) == 4
    _run_until_drained(engine, committer, follower)
    with engine.connect() as conn:
        attributed = _profile_of_events(conn)
        bob = find_profile(conn, type="user_id", value="bob")
    assert bob is not None and {attributed[f"bob-{n}"] for n in range(1, 5)} == {bob}
