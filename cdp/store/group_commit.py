"""Group commit: one writer thread commits the work of several concurrent requests together."""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError

from cdp.store.db import RETRYABLE_SQLSTATES, write_transaction

Work = Callable[[Connection], Any]
# Writers idle less than a tenth of the last half second: requests back to back (a burst), not a
# steady stream's now and then. Not "never idle": a group commit answers every request it held
# at once, so under any load the writer waits a moment for the next ones.
SATURATION_WINDOW_S, SATURATION_IDLE = 0.5, 0.1
T = TypeVar("T")


class GroupCommitter:
    """Runs units of write work in shared transactions, each in its own savepoint.

    A durable commit costs an fsync whatever it holds, and SQLite admits one writer at a time:
    committing the requests that arrived together at once turns N fsyncs into one. A failing unit
    rolls back to its savepoint and fails alone; every unit's future resolves only after the shared
    commit, so a caller that answers 200 on it still answers after the data is durable.
    """

    def __init__(self, engine: Engine, *, max_units: int = 32, writers: int = 1, attempts: int = 5) -> None:
        self._engine = engine
        self._max_units = max_units
        self._attempts = attempts
        self._queue: queue.SimpleQueue[tuple[Work, Future[Any]] | None] = queue.SimpleQueue()
        self._idle_since: dict[int, float] = {}  # writers waiting for work: since when
        created = time.monotonic()  # and idle before, as far as the window looks back
        self._idle_spans = collections.deque([(created - SATURATION_WINDOW_S, created)] * writers)  # recent waits
        self._spans_lock = threading.Lock()
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

    def submit(self, work: Work) -> Future[Any]:
        """Queue ``work``; its future gets its result once the transaction holding it has committed."""
        future: Future[Any] = Future()
        self._queue.put((work, future))
        return future

    def saturated(self) -> bool:
        """The writers waited for work less than ``SATURATION_IDLE`` of the last
        ``SATURATION_WINDOW_S``: requests keep them busy back to back."""
        now = time.monotonic()
        start = now - SATURATION_WINDOW_S
        with self._spans_lock:
            spans = [*self._idle_spans, *((since, now) for since in self._idle_since.values())]
        idle = sum(min(end, now) - max(begin, start) for begin, end in spans if end > start)
        return idle < SATURATION_IDLE * SATURATION_WINDOW_S * len(self._threads)

    def close(self) -> None:
        """Finish what is queued, then stop the writer threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while (first := self._next()) is not None:
            units = [first]
            stop = False
            while len(units) < self._max_units:
                try:
                    unit = self._queue.get_nowait()
                except queue.Empty:
                    break
                if unit is None:
                    stop = True
                    break
                units.append(unit)
            self._commit(units)
            if stop:
                return

    def _next(self) -> tuple[Work, Future[Any]] | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            pass
        writer, since = threading.get_ident(), time.monotonic()
        with self._spans_lock:
            self._idle_since[writer] = since
        try:
            return self._queue.get()
        finally:
            now = time.monotonic()
            with self._spans_lock:
                del self._idle_since[writer]
                self._idle_spans.append((since, now))
                while self._idle_spans and self._idle_spans[0][1] < now - SATURATION_WINDOW_S:
                    self._idle_spans.popleft()

    def _commit(self, units: list[tuple[Work, Future[Any]]]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self._engine.begin() as conn:
                for work, future in units:
                    result, error = self._attempt(conn, work)
                    if conn.invalidated:  # the store dropped the connection: the group's transaction is gone
                        raise error or DisconnectionError("the store dropped the connection")
                    outcomes.append((future, result, error))
        except Exception as error:  # the shared commit failed: nothing of anyone's is durable
            for _, future in units:
                future.set_exception(error)
            return
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

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
    threads share its writer), else in a transaction of its own (the CLI, tests)."""
    return committer.submit(work).result() if committer else write_transaction(engine, work)
