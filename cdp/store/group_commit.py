"""Group commit: one writer thread commits the work of several concurrent requests together."""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError

from cdp.store.db import RETRYABLE_SQLSTATES, write_transaction
from cdp.store.request_board import RequestBoard

Work = Callable[[Connection], Any]
# Requests waiting for the writers all but a tenth of the last half second: back to back (a
# burst), not a steady stream's now and then. Counted by requests, not by the writers' idle time:
# background work that keeps the writers busy (attribution) keeps requests from coming too, as
# each client waits for its answer, and the writers then look free while the requests starve.
SATURATION_WINDOW_S, SATURATION_IDLE = 0.5, 0.1
T = TypeVar("T")


class _Unit(NamedTuple):
    work: Work
    future: Future[Any]
    alone: bool
    redoable: bool


class GroupCommitter:
    """Runs units of write work in shared transactions, each in its own savepoint.

    A durable commit costs an fsync whatever it holds, and SQLite admits one writer at a time:
    committing the requests that arrived together at once turns N fsyncs into one. A failing unit
    rolls back to its savepoint and fails alone; every unit's future resolves only after the shared
    commit, so a caller that answers 200 on it still answers after the data is durable.

    A unit alone in its group needs no savepoint, and big units are best put there (``alone``):
    SQLite copies each page a savepoint's work first changes, and attribution, which changes a
    page or more per event, took 160-195 µs per event in a savepoint against 117-126 without
    (bench.attribution, SQLite); a batch of 500 events holds the writer long enough that one more
    commit costs it little.
    """

    def __init__(self, engine: Engine, *, max_units: int = 32, writers: int = 1, attempts: int = 5) -> None:
        self._engine = engine
        self._max_units = max_units
        self._attempts = attempts
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._waiting = 0  # requests submitted and not yet answered
        self._waiting_since = 0.0  # since when there have been some
        self._waiting_spans: collections.deque[tuple[float, float]] = collections.deque()  # recent such spans
        self._spans_lock = threading.Lock()
        self._last_request = float("-inf")
        self._board = RequestBoard.for_engine(engine)  # SQLite: what the other server processes' requests do
        self._threads = [threading.Thread(target=self._run, name=f"writer-{n}", daemon=True) for n in range(writers)]
        for thread in self._threads:
            thread.start()

    @classmethod
    def for_store(cls, engine: Engine) -> GroupCommitter:
        """SQLite admits one writer: one thread commits groups. PostgreSQL takes many writers side
        by side, and a group would hold the row and advisory locks of many requests at once, in no
        global order, so there each request is its own transaction, eight at a time."""
        if engine.dialect.name == "sqlite":
            return cls(engine, max_units=32, writers=1)
        return cls(engine, max_units=1, writers=8)

    @property
    def engine(self) -> Engine:
        return self._engine

    def submit(
        self, work: Work, *, background: bool = False, alone: bool = False, redoable: bool = False
    ) -> Future[Any]:
        """Queue ``work``; its future gets its result once the transaction holding it has committed.
        ``background`` work (attribution) does not count as a request in :meth:`saturated`; work
        submitted ``alone`` gets a transaction of its own, without a savepoint (see the class doc),
        and if ``redoable`` one whose commit does not wait for the disk (see :func:`write_transaction`)."""
        if redoable and not alone:
            raise ValueError("only work alone in its transaction can be redoable: a shared commit is the requests' too")
        future: Future[Any] = Future()
        if not background:
            now = time.monotonic()
            with self._spans_lock:
                if self._waiting == 0:
                    self._waiting_since = now
                self._waiting += 1
            future.add_done_callback(self._answered)
            self._last_request = now
            if self._board is not None:
                self._board.mark_request(now)
        self._queue.put(_Unit(work, future, alone, redoable))
        return future

    def saturated(self) -> bool:
        """Requests were waiting for the writers (queued or in a transaction) all but
        ``SATURATION_IDLE`` of the last ``SATURATION_WINDOW_S``: they come back to back. On SQLite,
        in this server process or, within that window, in another one on the same file."""
        now = time.monotonic()
        start = now - SATURATION_WINDOW_S
        with self._spans_lock:
            spans = [*self._waiting_spans, *([(self._waiting_since, now)] if self._waiting else [])]
        waited = sum(min(end, now) - max(begin, start) for begin, end in spans if end > start)
        if waited >= (1 - SATURATION_IDLE) * SATURATION_WINDOW_S:
            if self._board is not None:
                self._board.mark_saturated(now)
            return True
        return self._board is not None and self._board.last_saturated(now) > start

    def last_request(self) -> float:
        """When (``time.monotonic``) a request last came to the writers; on SQLite, of any server process."""
        if self._board is None:
            return self._last_request
        return max(self._last_request, self._board.last_request(time.monotonic()))

    def _answered(self, _: Future[Any]) -> None:
        now = time.monotonic()
        with self._spans_lock:
            self._waiting -= 1
            if self._waiting == 0:
                self._waiting_spans.append((self._waiting_since, now))
                while self._waiting_spans[0][1] < now - SATURATION_WINDOW_S:
                    self._waiting_spans.popleft()

    def close(self) -> None:
        """Finish what is queued, then stop the writer threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            units, later = [first], None
            stop = False
            while not first.alone and len(units) < self._max_units:
                try:
                    unit = self._queue.get_nowait()
                except queue.Empty:
                    break
                if unit is None:
                    stop = True
                    break
                if unit.alone:  # after this group, in a transaction of its own
                    later = unit
                    break
                units.append(unit)
            self._commit(units)
            if later is not None:
                self._commit([later])
            if stop:
                return

    def _commit(self, units: list[_Unit]) -> None:
        if len(units) == 1:  # nobody else's work to keep apart from: no savepoint
            self._commit_one(units[0])
            return
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self._engine.begin() as conn:
                for unit in units:
                    result, error = self._attempt(conn, unit.work)
                    if conn.invalidated:  # the store dropped the connection: the group's transaction is gone
                        raise error or DisconnectionError("the store dropped the connection")
                    outcomes.append((unit.future, result, error))
        except Exception as error:  # the shared commit failed: nothing of anyone's is durable
            for unit in units:
                unit.future.set_exception(error)
            return
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def _commit_one(self, unit: _Unit) -> None:
        try:
            result = write_transaction(self._engine, unit.work, attempts=self._attempts, redoable=unit.redoable)
        except Exception as error:
            unit.future.set_exception(error)
        else:
            unit.future.set_result(result)

    def _attempt(self, conn: Connection, work: Work) -> tuple[Any, BaseException | None]:
        for attempt in range(1, self._attempts + 1):
            try:
                with conn.begin_nested():
                    return work(conn), None
            except DBAPIError as error:
                # A concurrent writer (PostgreSQL) got in the way: after the savepoint's rollback
                # the unit sees what that writer committed, and a second try resolves it.
                if getattr(error.orig, "sqlstate", None) not in RETRYABLE_SQLSTATES or attempt == self._attempts:
                    return None, error
            except Exception as error:
                return None, error
        raise AssertionError("unreachable")


def write(engine: Engine, committer: GroupCommitter | None, work: Callable[[Connection], T]) -> T:
    """Run ``work`` in a write transaction: in the committer's next group when given one (a server's
    background workers share its writer with the requests), else in a transaction of its own (the CLI, tests)."""
    return committer.submit(work, background=True).result() if committer else write_transaction(engine, work)
