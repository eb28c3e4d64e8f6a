"""Engines for the store, tuned per dialect, and schema migration on start."""

from __future__ import annotations

import random
import sqlite3
import select as socket_select
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import orjson
from alembic import command
from alembic.config import Config
from psycopg.types.json import set_json_loads
from sqlalchemy import ColumnElement, Connection, Engine, Table, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.pool import NullPool

from cdp.config import Settings
from cdp.errors import InvalidInput
from cdp.store.checkpoint import WRITER_CHECKPOINT_PAGES, WalCheckpointer
from cdp.store.types import dumps_json, loads_json

MIGRATIONS = Path(__file__).with_name("migrations")
READ_ONLY = "cdp_read_only"
# Work whose commit may be lost in a power failure because it is done again from what is stored
# (attribution of pending events): its commit does not wait for the disk. See ``write_transaction``.
REDOABLE = "cdp_redoable"
# How long a SQLite statement waits for another connection's lock before failing.
_BUSY_TIMEOUT_MS = 60_000
_AFTER_COMMIT, _COMMITTED, _SAVEPOINTS = "cdp_after_commit", "cdp_committed", "cdp_savepoints"
# The synchronous level a SQLite connection was last set to, when not the configured one it opened with.
_SYNCHRONOUS = "cdp_synchronous"
T = TypeVar("T")


def reader(engine: Engine) -> Engine:
    """The same engine for read-only work: on SQLite it does not queue for the write lock; on both
    stores each statement runs on its own, outside a transaction (on PostgreSQL, read committed
    gives a transaction's statements no common snapshot anyway; BEGIN and the ROLLBACK on release
    would be two more round trips, or on SQLite two more statements, for a Profile API read that
    is a couple of indexed lookups)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(**{READ_ONLY: True}, isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{READ_ONLY: True})


def any_row(engine: Engine, table: Table, where: ColumnElement[bool]) -> bool:
    """Whether a row of ``table`` matches ``where``: a read, so that a worker looking for due work
    takes the store's writer (SQLite's one write lock) only when there is some."""
    with reader(engine).connect() as conn:
        return conn.execute(select(table.c.id).where(where).limit(1)).first() is not None


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Call ``callback`` once the transaction ``conn`` is in has committed and the connection is
    released; not when it, or the savepoint it was registered in, rolls back. For wake-ups and
    hand-overs: a thread woken before the commit reads too early.
    """
    conn.info.setdefault(_AFTER_COMMIT, []).append(callback)


def _run_after_commit(engine: Engine) -> None:
    # SQLAlchemy Core has no "after commit" event ("commit" fires just before the DBAPI commit), but
    # a transaction's connection goes back to the pool after it: callbacks committed by then run.
    @event.listens_for(engine, "commit")
    def _committing(connection) -> None:  # type: ignore[no-untyped-def]
        connection.info.pop(_SAVEPOINTS, None)
        connection.info.setdefault(_COMMITTED, []).extend(connection.info.pop(_AFTER_COMMIT, ()))

    @event.listens_for(engine, "rollback")
    def _forget(connection) -> None:  # type: ignore[no-untyped-def]
        if connection.invalidated:
            # The server dropped the connection mid-transaction: reading ``info`` now raises
            # PendingRollbackError in place of the OperationalError the caller must see (a 503,
            # a retry). The check-in below forgets what this transaction registered.
            return
        connection.info.pop(_AFTER_COMMIT, None)
        connection.info.pop(_SAVEPOINTS, None)

    # A unit of a group commit (cdp.store.group_commit) that fails rolls back to its savepoint
    # alone: the callbacks it registered go with it, those of the units beside it stay. Savepoints
    # nest, so their marks are a stack (the "savepoint" event is not told the savepoint's name).
    @event.listens_for(engine, "savepoint")
    def _mark(connection, _name) -> None:  # type: ignore[no-untyped-def]
        connection.info.setdefault(_SAVEPOINTS, []).append(len(connection.info.get(_AFTER_COMMIT, ())))

    @event.listens_for(engine, "release_savepoint")
    def _keep(connection, _name, _context) -> None:  # type: ignore[no-untyped-def]
        connection.info[_SAVEPOINTS].pop()

    @event.listens_for(engine, "rollback_savepoint")
    def _forget_since(connection, _name, _context) -> None:  # type: ignore[no-untyped-def]
        if connection.invalidated:  # as in _forget: the whole transaction is gone
            return
        del connection.info.get(_AFTER_COMMIT, [])[connection.info[_SAVEPOINTS].pop():]

    @event.listens_for(engine, "checkin")
    def _run(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info.pop(_AFTER_COMMIT, None)  # never committed
        record.info.pop(_SAVEPOINTS, None)
        for callback in record.info.pop(_COMMITTED, ()):
            callback()


def create_store_engine(settings: Settings, *, pool: bool = True) -> Engine:
    """An engine on ``settings``' store; SQLite gets WAL, a busy timeout and write transactions."""
    url = settings.resolved_database_url
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a clear text
        raise InvalidInput(f"CDP_DATABASE_URL is not a database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings, pool=pool)
    if parsed.get_backend_name() != "postgresql":
        raise InvalidInput(f"unsupported store {parsed.get_backend_name()!r}: use sqlite or postgresql+psycopg")
    # Enough kept connections for the requests a worker serves at once under load (16 by
    # default): one beyond them is closed on release, and opening one (a server process) costs
    # more than the requests it serves, so under a burst that churn fed the queue it came from.
    pooling = ({"pool_size": settings.database_pool_size, "max_overflow": settings.database_max_overflow}
               if pool else {"poolclass": NullPool})
    engine = create_engine(url, json_serializer=dumps_json, **pooling)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        set_json_loads(orjson.loads, dbapi_connection)  # jsonb payloads decode several times faster

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        if connection.get_execution_options().get(REDOABLE):
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO off")

    @event.listens_for(engine, "checkout")
    def _still_open(dbapi_connection, _record, _proxy) -> None:  # type: ignore[no-untyped-def]
        # Instead of pool_pre_ping's round trip per checkout: an idle connection has nothing to
        # read unless the server has said goodbye (a restart, an idle timeout, a terminated
        # backend), so a readable socket means a dead one. The pool then opens a fresh connection.
        # poll, not select: a busy server's descriptors pass select's limit of 1024.
        if dbapi_connection.closed:
            raise DisconnectionError("the pooled connection was closed")
        readable = socket_select.poll()
        readable.register(dbapi_connection.fileno(), socket_select.POLLIN)
        if readable.poll(0):
            raise DisconnectionError("the server closed this pooled connection")

    # Bulk inserts as multi-row VALUES statements (as psycopg2's dialect does), not psycopg 3's
    # pipelined executemany of one statement per row, which costs several times the CPU.
    engine.dialect.use_insertmanyvalues_wo_returning = True
    _run_after_commit(engine)
    return engine


def _sqlite_engine(url: str, settings: Settings, *, pool: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        json_serializer=dumps_json,
        json_deserializer=loads_json,
        connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT_MS / 1000},
        **({} if pool else {"poolclass": NullPool}),
    )
    # A server's or a flow's engine (pooled, long-lived) checkpoints from a thread of its own
    # (cdp.store.checkpoint); a one-shot CLI command's leaves it to its commits, as SQLite does.
    background = pool and settings.sqlite_background_checkpoint and database not in (None, "", ":memory:")
    checkpointer = WalCheckpointer(engine, database) if background else None

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Take over transaction control from pysqlite so that "begin" below can be IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={settings.sqlite_synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # The unique (source, messageId) index grows with the table; keep its pages in memory.
        cursor.execute(f"PRAGMA cache_size=-{settings.sqlite_cache_mb * 1024}")
        cursor.execute(f"PRAGMA mmap_size={4 * 1024**3}")
        cursor.execute("PRAGMA temp_store=MEMORY")
        if checkpointer is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        cursor.close()

    # NORMAL in WAL mode: a commit survives a crash of the process, not a power failure.
    redoable_level = "NORMAL" if settings.sqlite_synchronous in ("FULL", "EXTRA") else settings.sqlite_synchronous

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        # A deferred transaction that later writes can fail with SQLITE_BUSY without waiting;
        # taking the write lock up front makes concurrent workers queue on busy_timeout instead.
        # Readers (see ``reader``) don't need the lock, nor a transaction: WAL lets each of their
        # statements read a snapshot of its own beside the writer.
        options = connection.get_execution_options()
        if not options.get(READ_ONLY):
            driver = connection.connection.driver_connection
            # Changed before the transaction, as SQLite takes it only outside one; and only when
            # it changes, which is around attribution's transactions, not every request's.
            level = redoable_level if options.get(REDOABLE) else settings.sqlite_synchronous
            if connection.info.get(_SYNCHRONOUS, settings.sqlite_synchronous) != level:
                driver.execute(f"PRAGMA synchronous={level}")
                connection.info[_SYNCHRONOUS] = level
            if not _take_write_lock_soon(driver):
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # past the fast tries: SQLite's own wait

    _run_after_commit(engine)
    if checkpointer is not None:
        checkpointer.start()
    return engine


# How long a writer polls for SQLite's write lock at short intervals before leaving the wait to
# SQLite's busy handler, whose sleeps grow to 100 ms: a server process whose writer slept through
# the moment the other process let go waited for seconds while that one took the lock again and
# again (p99 of 2.9 s against 66 ms p50 on 10M events, bench.ingest).
_FAST_LOCK_S, _FAST_LOCK_SLEEP_S = 2.0, 0.001


def _take_write_lock_soon(dbapi_connection: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE, retried every millisecond while another writer holds the lock; False if it
    still holds it after ``_FAST_LOCK_S``."""
    deadline = time.monotonic() + _FAST_LOCK_S
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    return False
            time.sleep(_FAST_LOCK_SLEEP_S)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


# PostgreSQL errors that a second try of the same transaction resolves: deadlock, serialization
# failure, and a unique violation from a concurrent writer that got there first.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "23505"})


def write_transaction(
    engine: Engine, work: Callable[[Connection], T], *, attempts: int = 5, redoable: bool = False
) -> T:
    """Run ``work`` in a write transaction, retrying it when a concurrent writer got in the way.

    ``redoable`` work is done again from what is stored if its commit is lost (attribution: the
    events it attributes stay pending until it commits, and the follower takes them up again), so
    its commit does not wait for the disk: a power failure may undo it, never tear it (SQLite's
    WAL with ``synchronous=NORMAL``, PostgreSQL's ``synchronous_commit=off``). No client waits on it
    either. Attribution then took 106-113 µs per event instead of 117-126 on SQLite, 188 instead of
    231 on PostgreSQL (bench.attribution).
    """
    if redoable:
        engine = engine.execution_options(**{REDOABLE: True})
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                return work(conn)
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) not in RETRYABLE_SQLSTATES or attempt == attempts:
                raise
            time.sleep(random.uniform(0, 0.01 * 2**attempt))
    raise AssertionError("unreachable")


def migrate(engine: Engine) -> None:
    """Bring the store's schema to the newest migration (idempotent, safe to call on every start)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several workers may start at once: one migrates, the others wait, then see head.
            connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
