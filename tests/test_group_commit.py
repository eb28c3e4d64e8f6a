"""Group commit: units share a transaction, fail alone, and resolve only once durable."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.exc import OperationalError

from cdp.auth.service import create_source
from cdp.store.db import create_store_engine
from cdp.store.group_commit import GroupCommitter
from cdp.store.tables import sources
from tests.conftest import wait_until

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_units_fail_alone_and_resolve_after_commit(engine) -> None:  # type: ignore[no-untyped-def]
    commits = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    gate = threading.Event()
    committer = GroupCommitter(engine)
    try:
        # Hold the writer so that the next units queue up and go out in one transaction.
        blocker = committer.submit(lambda conn: gate.wait(10))
        ok = [committer.submit(lambda conn, n=n: create_source(conn, name=f"s{n}", now=NOW)[0].id) for n in range(10)]
        duplicate = committer.submit(lambda conn: create_source(conn, name="s3", now=NOW))
        boom = committer.submit(lambda conn: conn.execute(insert(sources).values(name=None)))
        commits_before = len(commits)
        gate.set()
        blocker.result(10)
        ids = [future.result(10) for future in ok]
        with pytest.raises(Exception, match="already exists"):
            duplicate.result(10)
        with pytest.raises(Exception):
            boom.result(10)
    finally:
        committer.close()
    assert len(set(ids)) == 10
    assert len(commits) - commits_before <= 2, "the queued units should share a commit"
    with engine.connect() as conn:  # another connection sees every unit that succeeded
        assert conn.execute(select(func.count()).select_from(sources)).scalar() == 10


def test_work_submitted_alone_runs_in_a_transaction_of_its_own_without_a_savepoint(engine) -> None:  # type: ignore[no-untyped-def]
    """Attribution's bulk work goes alone: no savepoint (SQLite copies each page a savepoint's work
    first changes), and units queued before and after it still share their own commits."""
    gate, holding = threading.Event(), threading.Event()
    committer = GroupCommitter(engine, max_units=32)

    def named(name: str, *, fail: bool = False):  # type: ignore[no-untyped-def]
        def work(conn) -> bool:  # type: ignore[no-untyped-def]
            create_source(conn, name=name, now=NOW)
            if fail:
                raise RuntimeError(f"{name} failed")
            return conn.in_nested_transaction()
        return work

    try:
        blocker = committer.submit(lambda conn: (holding.set(), gate.wait(10)))
        holding.wait(10)
        before = [committer.submit(named(f"before{n}")) for n in range(2)]
        alone = committer.submit(named("alone"), alone=True)
        failing = committer.submit(named("failing", fail=True), alone=True)
        after = [committer.submit(named(f"after{n}")) for n in range(2)]
        gate.set()
        blocker.result(10)
        assert [future.result(10) for future in before + after] == [True] * 4, "grouped units run in savepoints"
        assert alone.result(10) is False
        with pytest.raises(RuntimeError, match="failing failed"):
            failing.result(10)
    finally:
        committer.close()
    with engine.connect() as conn:
        names = set(conn.execute(select(sources.c.name)).scalars())
    assert names == {"before0", "before1", "alone", "after0", "after1"}


def test_redoable_work_commits_without_waiting_for_the_disk_and_the_next_transaction_waits_again(engine, settings) -> None:  # type: ignore[no-untyped-def]
    """Attribution is done again if a power failure undoes its commit: only it skips the wait."""
    def level(conn) -> object:  # type: ignore[no-untyped-def]
        if conn.dialect.name == "postgresql":
            return conn.exec_driver_sql("SHOW synchronous_commit").scalar_one()
        return ("OFF", "NORMAL", "FULL", "EXTRA")[conn.exec_driver_sql("PRAGMA synchronous").scalar_one()]

    committer = GroupCommitter(engine, max_units=32)
    try:
        redone = committer.submit(level, alone=True, redoable=True).result(10)
        after = [committer.submit(level).result(10), committer.submit(level, alone=True).result(10)]
        with pytest.raises(ValueError, match="only work alone"):
            committer.submit(level, redoable=True)
    finally:
        committer.close()
    durable = "on" if engine.dialect.name == "postgresql" else settings.sqlite_synchronous
    assert (redone, after) == ("off" if engine.dialect.name == "postgresql" else "NORMAL", [durable, durable])


@pytest.mark.parametrize("backend", ["postgresql"])  # a PostgreSQL server process ends; SQLite has none
def test_a_connection_the_server_drops_fails_the_group_with_the_store_error(engine) -> None:  # type: ignore[no-untyped-def]
    """The group's transaction is gone with its connection: every unit gets the OperationalError (the
    API's 503, which SDKs retry), not a 500 from SQLAlchemy's PendingRollbackError; the next group
    runs on a fresh connection."""
    gate, holding = threading.Event(), threading.Event()
    committer = GroupCommitter(engine, max_units=32)

    def dropped(conn) -> None:  # type: ignore[no-untyped-def]
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            admin.commit()
        conn.execute(text("SELECT 1"))

    try:
        # Hold the writer in a group of its own, so that the next units queue up and go out together.
        blocker = committer.submit(lambda conn: (holding.set(), gate.wait(10)))
        holding.wait(10)
        first = committer.submit(lambda conn: create_source(conn, name="before", now=NOW))
        drop = committer.submit(dropped)
        after = committer.submit(lambda conn: create_source(conn, name="after", now=NOW))
        gate.set()
        blocker.result(10)
        for future in (first, drop, after):
            with pytest.raises(OperationalError):
                future.result(10)
        assert committer.submit(lambda conn: create_source(conn, name="next", now=NOW)[0].name).result(10) == "next"
    finally:
        committer.close()
    with engine.connect() as conn:
        assert conn.execute(select(sources.c.name)).scalars().all() == ["next"]


def test_requests_waiting_behind_background_work_saturate_the_writer_and_background_work_alone_does_not(engine) -> None:  # type: ignore[no-untyped-def]
    """Saturation counts requests waiting, not the writer's idle time: a request held up behind
    background work (attribution) is a writer that requests need, though it never looks idle."""
    committer = GroupCommitter(engine, max_units=1, writers=1)
    release = threading.Event()
    try:
        held = committer.submit(lambda conn: release.wait(5), background=True)
        release.wait(0.6)  # longer than the window
        assert not committer.saturated(), "only background work"
        request = committer.submit(lambda conn: None)  # queued behind it
        release.wait(0.6)
        assert committer.saturated(), "a request waited the whole window"
        release.set()
        held.result()
        request.result()
        release.clear()
        release.wait(0.6)
        assert not committer.saturated(), "answered: nothing waits any more"
    finally:
        release.set()
        committer.close()


def test_on_sqlite_requests_waiting_in_one_server_process_saturate_the_writers_of_all(engine, settings) -> None:  # type: ignore[no-untyped-def]
    """SQLite has one write lock per file: requests starving in one process must hold back the
    background work of another, which has no requests of its own. On PostgreSQL, where writers go
    side by side, each process goes by its own requests."""
    other_engine = create_store_engine(settings)  # another server process's, on the same store
    busy, quiet = GroupCommitter(engine, max_units=1, writers=1), GroupCommitter(other_engine, max_units=1, writers=1)
    release = threading.Event()
    try:
        assert not quiet.saturated() and quiet.last_request() < time.monotonic() - 1, "no request yet"
        held = busy.submit(lambda conn: release.wait(5))  # a request the writer holds
        wait_until(busy.saturated, timeout_s=1)
        assert busy.saturated()
        shared = engine.dialect.name == "sqlite"
        assert quiet.saturated() is shared
        assert (quiet.last_request() == busy.last_request()) is shared
        release.set()
        held.result()
        release.clear()
        release.wait(0.6)  # the window passes with no request waiting
        assert not busy.saturated() and not quiet.saturated()
    finally:
        release.set()
        busy.close()
        quiet.close()
        other_engine.dispose()
