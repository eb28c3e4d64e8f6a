"""The journey worker: a thread of ``cdp serve`` (in every process, beside the delivery worker) that
fires due timers, writing through the process's group committer when given one. Its clock is a
parameter, so tests can run it on a chosen time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine

from cdp.journeys.engine import advance_due, due
from cdp.store.db import any_row
from cdp.store.group_commit import GroupCommitter, write
from cdp.store.tables import journey_instances

log = logging.getLogger(__name__)
BATCH = 500


def wall_clock() -> datetime:
    return datetime.now(UTC)


class JourneyWorker:
    """Fires due timers every ``poll_s``, at once again while a round found a full batch."""

    def __init__(self, engine: Engine, *, poll_s: float, clock: Callable[[], datetime] = wall_clock,
                 committer: GroupCommitter | None = None) -> None:
        self._engine = engine
        self._committer = committer
        self._poll_s = poll_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journeys", daemon=True)

    def start(self) -> JourneyWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                fired = write(self._engine, self._committer, self._advance) if any_row(
                    self._engine, journey_instances, due(self._clock())) else 0
            except Exception:  # the store down or busy, or a defect: the timers wait, stored, for the next round
                log.exception("advancing journeys failed; retrying")  # a thread that ended would fire none again
                fired = 0
            if fired < BATCH:
                self._stop.wait(self._poll_s)

    def _advance(self, conn: Connection) -> int:
        return advance_due(conn, now=self._clock(), limit=BATCH)
