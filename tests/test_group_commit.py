"""Group commit: units share a transaction, fail alone, and resolve only once durable."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.exc import OperationalError

from cdp.auth.service import create_source
from cdp.store.group_commit import GroupCommitter
from cdp.store.tables import sources

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
