"""Identity resolution for events the Tracking API stored ahead of it, in bulk, off the request path.

A 200 from the Tracking API means the message is durably stored (contract.md); resolving who sent
it costs several times the insert, so the API stores events ``pending`` and a follower in every
server process attributes them in batches (``CDP_ATTRIBUTION_BATCH``), in arrival order: one load
of the identity graph, one bulk write of links, traits and attributions per batch instead of per
request. Profiles lag ingestion by ``CDP_ATTRIBUTION_LAG_MS`` while the follower keeps up, and by
its backlog after a burst (a fraction of a second once requests pause), as Segment Unify's do.
Pending events survive a crash with the rest of the store and are taken up again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from cdp.computed.compute import apply_incremental
from cdp.computed.service import definitions_for_ingest
from cdp.events.bulk import read_pending, set_attributions
from cdp.events.ingest import IngestConfig, attribute, fire_live_hooks
from cdp.store.group_commit import GroupCommitter
from cdp.store.tables import EVENT_PENDING, events

log = logging.getLogger(__name__)

_BEHIND_RECHECK_S = 0.01


def attribute_pending(conn: Connection, *, config: IngestConfig, now: datetime, limit: int) -> int:
    """Attribute up to ``limit`` pending events, oldest first; returns how many were taken.

    On PostgreSQL, concurrent followers skip each other's rows; SQLite runs one writer at a time.
    """
    computed = definitions_for_ingest(conn)  # first: it may wait for a batch compute, before any row lock
    rows = read_pending(conn, limit)
    if not rows:
        return 0
    kept, merged = attribute(conn, rows, rules=config.identity, now=now)
    set_attributions(conn, [(row["id"], row["profile_id"]) for row in kept])
    kept_ids = {row["id"] for row in kept}
    dropped = [row["id"] for row in rows if row["id"] not in kept_ids]
    if dropped:  # suppressed subjects (a regulation): accepted, never kept
        conn.execute(delete(events).where(events.c.id.in_(dropped)))
    apply_incremental(conn, kept, computed, merged=merged, now=now)
    fire_live_hooks(conn, kept)
    return len(rows)


def count_pending(conn: Connection) -> int:
    """Events stored and not yet attributed to a profile: the follower's backlog."""
    return conn.execute(select(func.count()).select_from(events).where(EVENT_PENDING)).scalar_one()


class AttributionFollower:
    """A thread that keeps attributing pending events through the process's group committer.

    While it keeps up (its last batch was not full), events are attributed as soon as they are
    stored when the follower is idle, and else ``lag_s`` after the last batch started: a steady
    stream reaches profiles, audiences and journeys in batches of what arrived meanwhile. Once it
    falls behind (a full batch: a burst), the next batch starts once the API has had no request
    for ``idle_s``, or as soon as the writer is free. While requests keep the writer busy back to
    back (:meth:`GroupCommitter.saturated`: a burst), attribution takes at most ``share`` of its
    time: a batch that held it for ``w`` seconds, commit included, is followed by ``w / share - w``
    seconds of requests only. A 200 is what clients wait for, and attribution costs about as much
    writer time per event as the insert (more on a store of 10M events): given half of the writer,
    as it was, it held a burst's acknowledgements on SQLite to half of what a bare server stores
    (bench.ingest: 0.49 of it on 10M events; 0.96 with a tenth). The burst is attributed as it
    eases (its 250,000 events there in 22 s), and a stream that leaves the writer idle now and then
    is never held back. With ``idle_s=0``, a follower behind takes the writer as often as it can,
    its share aside. Without requests the follower looks every ``poll_s`` for events that other server
    processes stored.
    """

    def __init__(
        self, committer: GroupCommitter, config: IngestConfig, *, batch: int, lag_s: float, idle_s: float,
        share: float = 0.1, poll_s: float = 0.25,
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
        self._last_request = 0.0
        self._first_unattributed: float | None = None  # when the first request since the last batch stored events
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attribution", daemon=True)

    def start(self) -> AttributionFollower:
        self._thread.start()
        return self

    def notify(self) -> None:
        """A request stored events: attribute them soon, or once the API is quiet when behind."""
        self._last_request = time.monotonic()
        if self._first_unattributed is None:
            self._first_unattributed = self._last_request
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _due(self, *, behind: bool, last_batch: float) -> float:
        """When (``time.monotonic``) the next batch should start, the last one having started at
        ``last_batch``."""
        # Past this, attribution would have had more than its share of the writer since its last batch.
        shared = last_batch + self._worked / self._share
        # The writer busy with requests: a burst may have it saturated, and they come first.
        saturated = self._committer.saturated()
        if behind:
            return min(self._last_request + self._idle_s, shared) if saturated else last_batch
        if self._first_unattributed is not None:
            due = max(self._first_unattributed, last_batch + self._lag_s)
            return max(due, shared) if saturated else due
        return last_batch + self._poll_s

    def _run(self) -> None:
        limit = self._batch
        behind = False
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
            try:
                taken = self._committer.submit(lambda conn: self._attribute(conn, limit)).result()
                self._worked = time.monotonic() - self._started  # until its group committed
                behind = taken >= limit
                limit = self._batch
            except (OperationalError, InterfaceError):  # the store is down or busy: the events wait for the next try
                log.exception("attributing pending events failed; retrying")
                behind = False
            except Exception:
                # A message our code cannot resolve (a bug, or a refusal of the store such as a
                # constraint violation, which a retry only repeats) must not hold up everyone after
                # it: narrow the batch down to it, then leave it stored but unattributed, and say so.
                if limit > 1:
                    limit = 1
                else:
                    self._committer.submit(_give_up_on_oldest).result()
                    log.exception("an event could not be attributed; it stays stored without a profile")
                behind, last_batch = True, float("-inf")  # at once: the rest of the backlog waits behind it

    def _attribute(self, conn: Connection, limit: int) -> int:
        self._started = time.monotonic()  # the writer's time counts from here, not the wait in the committer's queue
        return attribute_pending(conn, config=self._config, now=datetime.now(UTC), limit=limit)


def _give_up_on_oldest(conn: Connection) -> None:
    oldest = select(func.min(events.c.id)).where(EVENT_PENDING).scalar_subquery()
    conn.execute(update(events).where(events.c.id == oldest).values(pending=False))
