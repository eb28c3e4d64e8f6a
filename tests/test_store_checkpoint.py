"""SQLite's WAL copied into the database by a thread of the engine's, not by the writers' commits;
and writers of two processes taking turns at the write lock."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cdp.config import Settings
from cdp.store.checkpoint import WRITER_CHECKPOINT_PAGES
from cdp.store.db import create_store_engine

ROWS, ROW_BYTES = 400, 20_000  # 8 MB: about 2,000 pages, past SQLite's own 1,000-page checkpoint


def _write(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB)")
    for _ in range(0, ROWS, 50):  # several commits, as a server's are
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO blobs (data) VALUES (?)", [(os.urandom(ROW_BYTES),) for _ in range(50)])


def _database_holds_the_rows(path: Path, *, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while path.stat().st_size < ROWS * ROW_BYTES:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _checkpoint_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "wal-checkpoint" and thread.is_alive()}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_server_engine_copies_the_log_from_its_own_thread(settings: Settings) -> None:
    engine = create_store_engine(settings)
    try:
        with engine.connect() as conn:
            # The writers' own checkpoint is only a backstop, far past what the thread leaves.
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WRITER_CHECKPOINT_PAGES
        _write(engine)
        # No commit reached the backstop: only the engine's thread can have filled the database file.
        assert _database_holds_the_rows(settings.home / "cdp.sqlite", within_s=5.0)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_without_the_thread_the_writers_checkpoint_as_sqlite_does(settings: Settings) -> None:
    before = _checkpoint_threads()
    one_shot = create_store_engine(settings, pool=False)  # a CLI command's engine
    off = create_store_engine(settings.model_copy(update={"sqlite_background_checkpoint": False}))
    try:
        assert not _checkpoint_threads() - before
        for engine in (one_shot, off):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        _write(off)
        assert _database_holds_the_rows(settings.home / "cdp.sqlite", within_s=0.0)
    finally:
        one_shot.dispose()
        off.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_thread_stops_when_its_engine_is_disposed(settings: Settings) -> None:
    before = _checkpoint_threads()
    engine = create_store_engine(settings)
    started = _checkpoint_threads() - before
    assert len(started) == 1
    engine.dispose()
    (thread,) = started
    thread.join(timeout=2.0)
    assert not thread.is_alive()
    assert engine is not None  # still referenced: the thread stopped on dispose, not on collection


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_log_starts_over_under_writers_that_never_pause(settings: Settings) -> None:
    """A writer that begins again right after each commit never finds the log all copied by the
    thread, so only its own checkpoint lets the log start over, past ``WRITER_CHECKPOINT_PAGES``
    (64 MiB): the log stays near that, not the size of what was written."""
    engine = create_store_engine(settings.model_copy(update={"sqlite_synchronous": "OFF"}))
    chunk = os.urandom(1 << 20)
    written, largest = 0, 0
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE blobs (data BLOB)")
        while written < 384 << 20:
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO blobs VALUES (?)", (chunk,))
                conn.exec_driver_sql("DELETE FROM blobs WHERE rowid < (SELECT max(rowid) FROM blobs) - 4")
            written += len(chunk)
            largest = max(largest, os.path.getsize(settings.home / "cdp.sqlite-wal"))
    finally:
        engine.dispose()
    assert largest < 192 << 20, (largest, written)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("fast_window_s", [2.0, 0.05], ids=["polling", "then-sqlite-waits"])
def test_a_writer_waits_for_the_lock_another_process_holds(settings: Settings, fast_window_s: float,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """While another process holds the write lock, a transaction polls for it, then (past the fast
    window) leaves the wait to SQLite; either way it starts once the lock is free, without an error."""
    monkeypatch.setattr("cdp.store.db._FAST_LOCK_S", fast_window_s)
    engine = create_store_engine(settings)
    other = sqlite3.connect(settings.home / "cdp.sqlite", isolation_level=None, check_same_thread=False)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE counts (n INTEGER)")
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        release.start()
        started = time.monotonic()
        with engine.begin() as conn:
            waited = time.monotonic() - started
            conn.exec_driver_sql("INSERT INTO counts VALUES (1)")
        release.join()
        assert waited >= 0.25  # it did wait for the other writer
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000  # SQLite's wait is back
            assert conn.exec_driver_sql("SELECT count(*) FROM counts").scalar() == 1
    finally:
        other.close()
        engine.dispose()
