"""Background jobs: long work run in a thread of the serving process, its state and progress in the store.

A job is a plain function ``work(progress) -> result``: it calls ``progress(done, total, message)`` as it
goes and returns something JSON can hold. :class:`JobRunner` runs it on one of its threads; each step
is written to the ``jobs`` table, so any server process (uvicorn runs several) answers "how far is job
7?" and the answer survives the request that started it.

A process that dies takes its running jobs with it. Each runner renews the ``heartbeat_at`` of the jobs
it holds every :data:`HEARTBEAT`; a queued or running job whose heartbeat is older than
:data:`STALE_AFTER` was left by a dead process, and any runner (at its start, then at each beat) marks it
``interrupted``. The threads are daemons: a stopping server does not wait for a readiness check.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, update

from cdp.errors import CdpError, NotFound
from cdp.store.db import any_row, reader, write_transaction
from cdp.store.tables import jobs

log = logging.getLogger(__name__)

LIVE = ("queued", "running")
HEARTBEAT = timedelta(seconds=5)
STALE_AFTER = timedelta(seconds=30)
KEEP_FINISHED = timedelta(days=7)  # then a finished job's row is deleted (when a runner starts)
INTERRUPTED = "the server process running it stopped before it finished: start it again"


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    scope: str
    state: str  # queued | running | done | failed | interrupted
    done: int
    total: int | None
    message: str
    result: Any
    error: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "scope"}


class Progress:
    """Handed to a job's work: ``progress(done, total, message)`` records how far it got, for every process."""

    def __init__(self, engine: Engine, job_id: int) -> None:
        self._engine, self.job_id = engine, job_id

    def __call__(self, done: int, total: int | None, message: str) -> None:
        write_transaction(self._engine, lambda conn: conn.execute(
            update(jobs).where(jobs.c.id == self.job_id, jobs.c.state == "running")
            .values(done=done, total=total, message=message, heartbeat_at=datetime.now(UTC))))


ProgressReport = Callable[[int, int | None, str], None]  # what work calls: a Progress, or no_progress
Work = Callable[[ProgressReport], Any]


def no_progress(done: int, total: int | None, message: str) -> None:
    """The ``progress`` of work run in the request itself: nobody polls it."""


def get_job(engine: Engine, job_id: int) -> Job:
    with reader(engine).connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return Job(**{name: getattr(row, name) for name in Job.__dataclass_fields__})


def interrupt_abandoned(engine: Engine, *, now: datetime, stale_after: timedelta = STALE_AFTER) -> int:
    """Mark ``interrupted`` the queued and running jobs whose process stopped renewing them; how many."""
    stale = and_(jobs.c.state.in_(LIVE), jobs.c.heartbeat_at < now - stale_after)
    if not any_row(engine, jobs, stale):  # most times there is none: no write lock taken for nothing
        return 0
    return write_transaction(engine, lambda conn: conn.execute(
        update(jobs).where(stale).values(state="interrupted", error=INTERRUPTED, finished_at=now))).rowcount


class JobRunner:
    """Runs submitted jobs on ``workers`` daemon threads and keeps their heartbeats; ``start`` then ``stop``."""

    def __init__(self, engine: Engine, *, workers: int = 2, heartbeat: timedelta = HEARTBEAT,
                 stale_after: timedelta = STALE_AFTER) -> None:
        self._engine, self._workers = engine, workers
        self._heartbeat, self._stale_after = heartbeat, stale_after
        self._queue: queue.SimpleQueue[tuple[int, Work]] = queue.SimpleQueue()
        self._held: set[int] = set()  # queued or running here
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> JobRunner:
        now = datetime.now(UTC)
        interrupt_abandoned(self._engine, now=now, stale_after=self._stale_after)
        write_transaction(self._engine, lambda conn: conn.execute(
            delete(jobs).where(jobs.c.finished_at < now - KEEP_FINISHED)))
        for n in range(self._workers):
            threading.Thread(target=self._work, daemon=True, name=f"jobs-{n}").start()
        threading.Thread(target=self._beat, daemon=True, name="jobs-heartbeat").start()
        return self

    def submit(self, *, kind: str, scope: str, created_by: str, work: Work) -> Job:
        """Queue ``work`` as a job of ``kind`` that callers with ``scope`` may follow; the job as stored."""
        now = datetime.now(UTC)
        job_id = write_transaction(self._engine, lambda conn: conn.execute(
            insert(jobs).values(kind=kind, scope=scope, state="queued", done=0, total=None,
                                message="waiting to start", created_by=created_by, created_at=now,
                                heartbeat_at=now).returning(jobs.c.id)).scalar_one())
        queued = get_job(self._engine, job_id)
        with self._lock:
            self._held.add(job_id)
        self._queue.put((job_id, work))
        return queued

    def stop(self) -> None:
        """Stop beating; jobs still held here are marked interrupted now rather than after a delay."""
        self._stopping.set()
        with self._lock:
            held = list(self._held)
        if held:
            now = datetime.now(UTC)
            write_transaction(self._engine, lambda conn: conn.execute(
                update(jobs).where(jobs.c.id.in_(held), jobs.c.state.in_(LIVE))
                .values(state="interrupted", error=INTERRUPTED, finished_at=now)))

    def _work(self) -> None:
        while True:
            job_id, work = self._queue.get()
            try:
                self._run(job_id, work)
            finally:
                with self._lock:
                    self._held.discard(job_id)

    def _run(self, job_id: int, work: Work) -> None:
        self._set(job_id, "queued", state="running", message="started", started_at=datetime.now(UTC))
        try:
            result = work(Progress(self._engine, job_id))
        except CdpError as error:
            self._set(job_id, "running", state="failed", error=error.message, finished_at=datetime.now(UTC))
        except Exception as error:  # its owner reads the outcome from the table
            log.exception("job %s failed", job_id)
            self._set(job_id, "running", state="failed", finished_at=datetime.now(UTC),
                      error=f"it failed unexpectedly ({type(error).__name__}); the server log has the details")
        else:
            self._set(job_id, "running", state="done", result=result, message="finished",
                      done=func.coalesce(jobs.c.total, jobs.c.done),
                      finished_at=datetime.now(UTC))

    def _set(self, job_id: int, current: str, **values: Any) -> None:
        # Only from the state it is in: a job marked interrupted meanwhile stays interrupted.
        write_transaction(self._engine, lambda conn: conn.execute(
            update(jobs).where(jobs.c.id == job_id, jobs.c.state == current)
            .values(heartbeat_at=datetime.now(UTC), **values)))

    def _beat(self) -> None:
        while not self._stopping.wait(self._heartbeat.total_seconds()):
            try:
                with self._lock:
                    held = list(self._held)
                now = datetime.now(UTC)
                if held:
                    write_transaction(self._engine, lambda conn: conn.execute(
                        update(jobs).where(jobs.c.id.in_(held), jobs.c.state.in_(LIVE)).values(heartbeat_at=now)))
                interrupt_abandoned(self._engine, now=now, stale_after=self._stale_after)
            except Exception:  # a store hiccup must not end the heartbeat
                log.exception("job heartbeat failed")
