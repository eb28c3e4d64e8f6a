"""Identity resolution for events the Tracking API stored ahead of it, in bulk, off the request path.

A 200 from the Tracking API means the message is durably stored (contract.md); resolving who sent
it costs several times the insert, so the API stores events ``pending`` and a follower in every
server process attributes them in batches (``CDP_ATTRIBUTION_BATCH``), in arrival order: one load
of the identity graph, one bulk write of links, traits and attributions per batch instead of per
request. Profiles lag ingestion by ``CDP_ATTRIBUTION_LAG_MS`` while the follower keeps up, and by
its backlog after a burst (a fraction of a second once requests pause), as Segment Unify's do.
(With ``CDP_ATTRIBUTION_AT_INGEST``, the API attributes a returning person's track, page and
screen calls itself, see ``cdp.events.ingest.store_pending``: the follower gets the rest.)

The API hands each follower the rows its own process stored, already parsed and with their ids,
and the follower finds their identifiers before it takes the store's writer: what it does with the
writer held is the part that needs the store. The store stays the record: a row handed over is
attributed only if it is still pending when the writer is taken, and events no follower holds (a
server that stopped or was killed) are read back from the store once they have waited
``orphan_after_s``. Pending events survive a crash with the
rest of the store and are taken up again; so does a batch whose commit a power failure undid,
which is why its commit does not wait for the disk (``redoable``, cdp.store.db.write_transaction).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from cdp.computed.compute import apply_incremental
from cdp.computed.schemas import ComputedTrait
from cdp.computed.service import definitions_for_ingest
from cdp.events.bulk import lock_pending_among, pending_row, read_pending, read_pending_among, set_attributions
from cdp.events.ingest import Identified, IngestConfig, attribute_identified, fire_live_hooks
from cdp.store.db import reader
from cdp.store.group_commit import GroupCommitter
from cdp.store.tables import EVENT_PENDING, events
from cdp.store.types import dumps_json

log = logging.getLogger(__name__)

_BEHIND_RECHECK_S = 0.01
# Memory for the rows handed over (their JSON's length, plus what the rest of an entry costs);
# past it, a follower keeps their ids and reads them back from the store when their turn comes.
QUEUE_BYTES = 64 * 2**20
QUEUE_ENTRIES = 500_000
_ENTRY_BYTES = 400

# (source id, messageId, type, event, event time, received at, the message's JSON)
_Kept = tuple[int, str, str, str | None, datetime, datetime, str]
_Entry = tuple[int, _Kept | None, int]  # event id, the row if kept, the bytes it counts for


def attribute_pending(conn: Connection, *, config: IngestConfig, now: datetime, limit: int) -> int:
    """Attribute up to ``limit`` pending events read from the store, oldest first; returns how many
    were taken. On PostgreSQL, concurrent followers skip each other's rows; SQLite runs one writer at a time.
    """
    computed = definitions_for_ingest(conn)  # first: it may wait for a batch compute, before any row lock
    rows = read_pending(conn, limit)
    _attribute(conn, Identified.of(rows, config.identity), computed, config=config, now=now)
    return len(rows)


def attribute_handed_over(conn: Connection, batch: Identified, *, config: IngestConfig, now: datetime) -> None:
    """Attribute the rows of ``batch`` still pending (another follower may have taken some, a
    regulation deleted them): rows read before the writer was taken, their identifiers found."""
    computed = definitions_for_ingest(conn)  # first, as above
    still = lock_pending_among(conn, [row["id"] for row in batch.rows])
    _attribute(conn, batch.only(still), computed, config=config, now=now)


def _attribute(conn: Connection, batch: Identified, computed: list[ComputedTrait], *, config: IngestConfig,
               now: datetime) -> None:
    if not batch.rows:
        return
    kept, merged = attribute_identified(conn, batch, rules=config.identity, now=now)
    set_attributions(conn, [(row["id"], row["profile_id"]) for row in kept])
    kept_ids = {row["id"] for row in kept}
    dropped = [row["id"] for row in batch.rows if row["id"] not in kept_ids]
    if dropped:  # suppressed subjects (a regulation): accepted, never kept
        conn.execute(delete(events).where(events.c.id.in_(dropped)))
    apply_incremental(conn, kept, computed, merged=merged, now=now)
    fire_live_hooks(conn, kept)


def count_pending(conn: Connection) -> int:
    """Events stored and not yet attributed to a profile: the follower's backlog."""
    return conn.execute(select(func.count()).select_from(events).where(EVENT_PENDING)).scalar_one()


class AttributionFollower:
    """A thread that keeps attributing pending events through the process's group committer.

    While it keeps up (its last batch was not full), events are attributed as soon as they are
    stored when the follower is idle, and else ``lag_s`` after the last batch started: a steady
    stream reaches profiles, audiences and journeys in batches of what arrived meanwhile. Once it
    falls behind (a full batch: a burst), the next batch starts once the API has had no request
    for ``idle_s``, or as soon as the writer is free. While requests wait for the writer back to
    back (:meth:`GroupCommitter.saturated`: a burst), attribution takes at most ``share`` of its
    time: a batch that held it for ``w`` seconds, commit included, is followed by ``w / share - w``
    seconds of requests only. A 200 is what clients wait for, and attribution costs about as much
    writer time per event as the insert (more on a store of 10M events): given half of the writer,
    as it was, it held a burst's acknowledgements on SQLite to half of what a bare server stores
    (bench.ingest: 0.49 of it on 10M events; 0.96 with a tenth). The burst is attributed as it
    eases (its 250,000 events there in 22 s), and a stream that leaves the writer idle now and then
    is never held back. With ``idle_s=0``, a follower behind takes the writer as often as it can,
    its share aside.

    It attributes the rows :meth:`notify` hands it, in the order they were stored. Once they are
    done, every ``poll_s``, it looks for events nobody handed over that have waited
    ``orphan_after_s`` (see the module doc), and attributes those, oldest first, until none are left.
    """

    def __init__(
        self, committer: GroupCommitter, config: IngestConfig, *, batch: int, lag_s: float, idle_s: float,
        share: float = 0.1, poll_s: float = 0.25, orphan_after_s: float = 2.0, queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self._committer = committer
        self._config = config
        self._batch = batch
        self._lag_s = lag_s
        self._idle_s = idle_s
        self._share = share
        self._worked = 0.0  # how long the last batch held the writer, its commit included
        self._started = 0.0
        self._poll_s = poll_s
        self._orphan_after = timedelta(seconds=orphan_after_s)
        self._next_look = 0.0  # when to look for events nobody handed over
        self._queue: collections.deque[_Entry] = collections.deque()
        self._queue_lock = threading.Lock()
        self._queue_bytes = queue_bytes
        self._queued_bytes = 0
        self._overflowing = False
        self._first_unattributed: float | None = None  # when the first request since the last batch stored events
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attribution", daemon=True)

    def start(self) -> AttributionFollower:
        self._thread.start()
        return self

    def notify(self, rows: Iterable[dict[str, Any]] = ()) -> None:
        """A request stored events, ``rows`` (committed, each with its ``id`` if the store told
        it): attribute them soon, or once the API is quiet when behind."""
        with self._queue_lock:
            # Past QUEUE_ENTRIES (a backlog of millions) the rest are left to the store, in order:
            # nothing more is queued until the queue is done and the store's backlog read back.
            self._overflowing = self._overflowing or len(self._queue) >= QUEUE_ENTRIES
            if not self._overflowing:
                self._queue.extend(self._entry(row) for row in rows if "id" in row)
        if self._first_unattributed is None:
            self._first_unattributed = time.monotonic()
            self._wake.set()

    def _entry(self, row: dict[str, Any]) -> _Entry:
        # Kept as the JSON it was stored as, parsed again when its turn comes: a parsed message is a
        # tree of objects that the garbage collector would go through on every full pass while it
        # waits, and a backlog of a burst is hundreds of thousands of them; a tuple of text is not.
        payload = row.get("payload_json") or dumps_json(row["payload"])
        size = len(payload) + _ENTRY_BYTES
        if self._queued_bytes + size > self._queue_bytes:
            return row["id"], None, 0
        self._queued_bytes += size
        kept = (row["source_id"], row["message_id"], row["type"], row["event"], row["timestamp"], row["received_at"],
                payload)
        return row["id"], kept, size

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _due(self, *, behind: bool, last_batch: float) -> float:
        """When (``time.monotonic``) the next batch should start, the last one having started at
        ``last_batch``."""
        # Past this, attribution would have had more than its share of the writer since its last batch.
        shared = last_batch + self._worked / self._share
        # Requests waiting for the writer back to back: a burst, and they come first.
        saturated = self._committer.saturated()
        if behind:
            return min(self._committer.last_request() + self._idle_s, shared) if saturated else last_batch
        if self._first_unattributed is not None:
            due = max(self._first_unattributed, last_batch + self._lag_s)
            return max(due, shared) if saturated else due
        return last_batch + self._poll_s

    def _run(self) -> None:
        limit = self._batch
        behind = False
        from_store = False  # this batch is read from the store (events nobody handed over)
        last_batch = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            due = self._due(behind=behind, last_batch=last_batch)
            if now < due:
                # Behind, look again soon: the writer may be free before the share says so.
                self._wake.wait(min(due - now, _BEHIND_RECHECK_S) if behind else due - now)
                self._wake.clear()
                continue
            last_batch = now
            self._first_unattributed = None  # events stored from here on wait for the next batch
            if limit == self._batch:  # else a failed batch is being narrowed down, where it came from
                # Events nobody handed over, while their backlog lasts and only while ours are done:
                # ours come first, and a follower behind a burst has its own backlog to attribute
                # (rows of another follower's that this one took would be work done twice).
                from_store = not self._queue and (
                    self._overflowing or (from_store and behind) or self._orphans_waiting(now))
            entries = [] if from_store else self._take(limit)
            if not (from_store or entries):
                behind = False
                continue
            try:
                if from_store:
                    taken = self._attribute_stored(limit)
                else:
                    self._attribute_entries(entries)
                    taken = len(entries)
                self._worked = time.monotonic() - self._started  # until its group committed
                behind = taken >= limit
                if from_store and not behind:
                    self._overflowing = False  # the store's backlog is read: hand-overs resume
                limit = self._batch
            except (OperationalError, InterfaceError):  # the store is down or busy: the events wait for the next try
                self._put_back(entries)
                log.exception("attributing pending events failed; retrying")
                behind = False
            except Exception:
                # A message our code cannot resolve (a bug, or a refusal of the store such as a
                # constraint violation, which a retry only repeats) must not hold up everyone after
                # it: narrow the batch down to it, then leave it stored but unattributed, and say so.
                if limit > 1:
                    self._put_back(entries)
                    limit = 1
                else:
                    self._committer.submit(lambda conn: _give_up(conn, [event_id for event_id, *_ in entries]),
                                          background=True).result()
                    log.exception("an event could not be attributed; it stays stored without a profile")
                    limit = self._batch
                behind, last_batch = True, float("-inf")  # at once: the rest of the backlog waits behind it

    def _attribute_entries(self, entries: list[_Entry]) -> None:
        """Attribute rows handed over, reading back those not kept."""
        rows = [_row(event_id, kept) for event_id, kept, _ in entries if kept is not None]
        if missing := [event_id for event_id, kept, _ in entries if kept is None]:
            with reader(self._committer.engine).connect() as conn:
                rows += read_pending_among(conn, missing)
        self._attribute_rows(rows)

    def _attribute_stored(self, limit: int) -> int:
        """Attribute up to ``limit`` of the oldest pending events, read from the store; returns how many were read."""
        with reader(self._committer.engine).connect() as conn:
            rows = read_pending(conn, limit)
        self._attribute_rows(rows)
        return len(rows)

    def _attribute_rows(self, rows: list[dict[str, Any]]) -> None:
        """Find the identifiers of ``rows`` read outside the writer (all that needs no store),
        then take the writer and attribute those still pending."""
        batch = Identified.of(rows, self._config.identity)

        def attribute(conn: Connection) -> None:
            self._started = time.monotonic()  # the writer's time counts from here, not the wait in the committer's queue
            attribute_handed_over(conn, batch, config=self._config, now=datetime.now(UTC))

        self._committer.submit(attribute, background=True, alone=True, redoable=True).result()

    def _take(self, limit: int) -> list[_Entry]:
        with self._queue_lock:
            entries = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
            self._queued_bytes -= sum(size for *_, size in entries)
        return entries

    def _put_back(self, entries: list[_Entry]) -> None:
        with self._queue_lock:
            self._queue.extendleft(reversed(entries))
            self._queued_bytes += sum(size for *_, size in entries)

    def _orphans_waiting(self, now: float) -> bool:
        """Every ``poll_s``: whether the oldest pending event has waited ``orphan_after_s`` (see the
        class doc). One row from the pending index: nothing to read while followers keep up."""
        if now < self._next_look:
            return False
        self._next_look = now + self._poll_s
        try:
            with reader(self._committer.engine).connect() as conn:
                oldest = conn.execute(select(events.c.received_at).where(EVENT_PENDING).order_by(events.c.id).limit(1)
                                      ).scalar()
        except (OperationalError, InterfaceError):  # the store is down: its events wait, and so does this look
            log.exception("looking for pending events failed; looking again later")
            return False
        return oldest is not None and oldest <= datetime.now(UTC) - self._orphan_after


def _row(event_id: int, kept: _Kept) -> dict[str, Any]:
    source_id, message_id, kind, event, timestamp, received_at, payload = kept
    return pending_row(event_id, source_id, message_id, kind, event, timestamp, received_at, orjson.loads(payload))


def _give_up(conn: Connection, event_ids: list[int]) -> None:
    """Leave these events stored without a profile; none: the oldest pending one."""
    if not event_ids:
        event_ids = [conn.execute(select(func.min(events.c.id)).where(EVENT_PENDING)).scalar_one()]
    conn.execute(update(events).where(events.c.id.in_(event_ids)).values(pending=False))
