"""The store on SQLite and PostgreSQL: migrations, credentials, ingestion, dedup, quarantine."""

from __future__ import annotations

import os
import resource
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, func, inspect, literal, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from cdp.auth.service import create_source, create_token, hash_secret, source_for_write_key, token_for_secret
from cdp.config import Settings
from cdp.errors import Conflict, InvalidInput
from cdp.events.ingest import LIVE_HOOKS, IngestConfig, ingest
from cdp.events.quarantine import count_pending, list_pending, replay
from cdp.events.schemas import Envelope
from cdp.setup import prepare_store, register_configured_credentials
from cdp.store.db import after_commit, create_store_engine, migrate, reader
from cdp.store.driver import DriverStatement
from cdp.store.tables import api_tokens, events, quarantine, sources

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
CONFIG = IngestConfig.from_settings(Settings())


def _ingest(conn, source_id, messages, *, live=True, envelope=None):  # type: ignore[no-untyped-def]
    return ingest(
        conn, source_id=source_id, messages=messages, envelope=envelope or Envelope(received_at=NOW),
        config=CONFIG, live=live,
    )


@pytest.fixture
def source_id(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        return create_source(conn, name="web", now=NOW)[0].id


def test_migrations_create_the_schema_and_are_idempotent(engine) -> None:  # type: ignore[no-untyped-def]
    migrate(engine)
    migrate(engine)
    inspector = inspect(engine)
    assert {"sources", "api_tokens", "events", "quarantine", "alembic_version"} <= set(inspector.get_table_names())
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("events")}
    assert ("message_id", "source_id") in uniques


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_store_runs_in_wal_mode(settings: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert (settings.home / "cdp.sqlite").is_file()


def test_secrets_are_stored_only_as_hashes(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        source, key = create_source(conn, name="web", now=NOW)
        token, secret = create_token(conn, name="app", scopes=["recommendations:read"], now=NOW)
        stored_key = conn.execute(select(sources.c.write_key_hash)).scalar()
        stored_token = conn.execute(select(api_tokens.c.token_hash)).scalar()
        assert key not in stored_key and stored_key == hash_secret(key)
        assert secret not in stored_token and stored_token == hash_secret(secret)
        assert source_for_write_key(conn, write_key=key) == source
        assert source_for_write_key(conn, write_key=key + "x") is None
        found = token_for_secret(conn, token=secret)
        assert found is not None and found.allows("recommendations:read") and not found.allows("admin")


def test_bad_credentials_requests_are_refused(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        create_source(conn, name="web", now=NOW)
        with pytest.raises(Conflict):
            create_source(conn, name="web", now=NOW)
        with pytest.raises(InvalidInput, match="unknown scope"):
            create_token(conn, name="x", scopes=["root"], now=NOW)
        with pytest.raises(InvalidInput):
            create_source(conn, name="  ", now=NOW)


def test_configured_credentials_are_registered_once(settings: Settings) -> None:
    configured = settings.model_copy(update={"write_keys": "k1, k2", "admin_token": "adm"})
    engine = prepare_store(configured)
    register_configured_credentials(engine, configured)  # a second start
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sources)).scalar() == 2
        assert source_for_write_key(conn, write_key="k2") is not None
        assert token_for_secret(conn, token="adm").allows("profiles:read")
    engine.dispose()


def test_ingest_stores_all_fields_and_dedups_on_source_and_message_id(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        other = create_source(conn, name="app", now=NOW)[0].id
    message = {"type": "track", "messageId": "m1", "userId": "u1", "event": "Order Completed",
               "properties": {"revenue": 10}, "originalTimestamp": "2026-03-01T11:00:00Z"}
    envelope = Envelope(received_at=NOW, sent_at=datetime(2026, 3, 1, 11, 0, 1, tzinfo=UTC))
    with engine.begin() as conn:
        result = _ingest(conn, source_id, [message, dict(message)], envelope=envelope)
    assert result.accepted == 2 and result.quarantined == 0
    with engine.begin() as conn:  # an SDK retry: same id, later sentAt
        _ingest(conn, source_id, [message], envelope=Envelope(received_at=NOW + timedelta(minutes=1)))
        _ingest(conn, other, [message])  # another source may reuse the id
    with engine.connect() as conn:
        rows = conn.execute(select(events).order_by(events.c.id)).all()
    assert [(r.source_id, r.message_id) for r in rows] == [(source_id, "m1"), (other, "m1")]
    first = rows[0]
    assert first.timestamp == NOW - timedelta(seconds=1)
    assert first.original_timestamp == datetime(2026, 3, 1, 11, tzinfo=UTC)
    assert first.sent_at == envelope.sent_at and first.received_at == NOW
    assert first.payload["properties"] == {"revenue": 10}
    assert first.timestamp.tzinfo is not None


def test_invalid_messages_go_to_the_quarantine_and_can_be_replayed(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    batch = [
        {"type": "track", "userId": "u1", "event": "Ok", "messageId": "a"},
        {"type": "track", "userId": "u1", "messageId": "b"},
        {"type": "identify", "messageId": "c"},
    ]
    with engine.begin() as conn:
        result = _ingest(conn, source_id, batch)
    assert (result.accepted, result.quarantined) == (1, 2)
    assert [r.index for r in result.rejections] == [1, 2]
    with engine.connect() as conn:
        assert count_pending(conn) == {"missing_event": 1, "no_user_anon_id": 1}
        pending = list_pending(conn)
    assert [p.message_id for p in pending] == ["b", "c"] and pending[0].source == "web"

    # Someone fixes the data in place (e.g. after a tracking plan change); replay stores what now passes.
    with engine.begin() as conn:
        fixed = dict(pending[0].payload, event="Recovered")
        conn.execute(quarantine.update().where(quarantine.c.id == pending[0].id).values(payload=fixed))
        outcome = replay(conn, now=NOW, config=CONFIG)
    assert (outcome.replayed, outcome.still_invalid) == (1, 1)
    with engine.connect() as conn:
        assert conn.execute(select(events.c.event).where(events.c.message_id == "b")).scalar() == "Recovered"
        assert count_pending(conn) == {"no_user_anon_id": 1}
        # Replaying again does not duplicate what was already replayed.
    with engine.begin() as conn:
        assert replay(conn, now=NOW, config=CONFIG).replayed == 0


def test_nul_characters_are_dropped_and_their_messages_kept(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL keeps no NUL in text or jsonb: one such message used to fail its whole batch."""
    batch = [
        {"type": "track", "userId": "u\x00x", "event": "Viewed\x00", "messageId": "n1",
         "properties": {"k\x00": ["v\x00", 1]}},
        {"type": "identify", "userId": "u2", "traits": {"name": "Ann"}, "messageId": "n2"},
        {"type": "track", "userId": "\x00", "event": "E", "messageId": "n3"},  # no id left: quarantined
    ]
    with engine.begin() as conn:
        result = _ingest(conn, source_id, batch)
    assert (result.accepted, result.quarantined) == (2, 1)
    with engine.connect() as conn:
        stored = conn.execute(select(events.c.user_id, events.c.event, events.c.payload).order_by(events.c.id)).all()
        assert count_pending(conn) == {"no_user_anon_id": 1}
    assert (stored[0].user_id, stored[0].event, stored[0].payload["properties"]) == ("ux", "Viewed", {"k": ["v", 1]})
    assert stored[1].user_id == "u2"


def test_backfill_never_fires_live_hooks(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    fired: list[int] = []
    LIVE_HOOKS.append(lambda conn, source, rows: fired.append(len(rows)))
    try:
        with engine.begin() as conn:
            _ingest(conn, source_id, [{"type": "track", "userId": "u", "event": "E", "messageId": "1"}], live=False)
            _ingest(conn, source_id, [{"type": "track", "userId": "u", "event": "E", "messageId": "2"}], live=True)
    finally:
        LIVE_HOOKS.pop()
    assert fired == [1]


def test_a_failed_transaction_stores_nothing(engine, source_id) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError), engine.begin() as conn:
        _ingest(conn, source_id, [{"type": "track", "userId": "u", "event": "E", "messageId": "x"}])
        raise RuntimeError("crash before commit")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 0


def test_migrations_match_the_table_definitions(engine) -> None:  # type: ignore[no-untyped-def]
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from cdp.store.tables import metadata

    def on_this_store(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
        # An index declared for one dialect only (``info["dialect"]``, with ``ddl_if``) exists there only.
        return reflected or obj.info.get("dialect", dialect) == dialect

    with engine.connect() as conn:
        dialect = conn.dialect.name
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_object": on_this_store}), metadata)
    assert diff == []


def test_after_commit_callbacks_run_once_committed_and_never_after_a_rollback(engine) -> None:  # type: ignore[no-untyped-def]
    ran: list[str] = []
    with engine.begin() as conn:
        conn.execute(select(1))
        after_commit(conn, lambda: ran.append("committed"))
        assert ran == []  # the delivery worker woken here would not see the rows yet
    assert ran == ["committed"]
    with pytest.raises(RuntimeError), engine.begin() as conn:
        after_commit(conn, lambda: ran.append("rolled back"))
        raise RuntimeError
    with engine.connect() as conn:
        conn.execute(select(1))
        after_commit(conn, lambda: ran.append("never committed"))
    with engine.begin() as conn:
        conn.execute(select(1))
    assert ran == ["committed"]


@pytest.mark.parametrize("backend", ["postgresql"])  # a PostgreSQL server process ends; SQLite has none
def test_a_pooled_connection_the_server_closed_is_replaced_without_an_error(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as other:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # The first connection is back in the pool, idle: the server ends its process.
        assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        other.commit()
    pids = set()
    time.sleep(0.2)  # the server's goodbye reaches the idle socket
    for _ in range(3):  # every pooled connection in turn, the dead one among them: no error
        with engine.connect() as conn, engine.connect() as beside:
            pids |= {conn.execute(text("SELECT pg_backend_pid()")).scalar_one(),
                     beside.execute(text("SELECT pg_backend_pid()")).scalar_one()}
    assert first not in pids


@pytest.mark.parametrize("backend", ["postgresql"])  # a PostgreSQL server process ends; SQLite has none
def test_a_connection_lost_mid_transaction_raises_the_store_error(engine) -> None:  # type: ignore[no-untyped-def]
    """The API answers an OperationalError with a 503 and the attribution follower retries it; the
    rollback bookkeeping once replaced it with PendingRollbackError (a 500, a message given up)."""
    ran: list[str] = []
    with engine.connect() as admin:
        with pytest.raises(OperationalError), engine.begin() as conn:
            after_commit(conn, lambda: ran.append("committed"))
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            admin.commit()
            conn.execute(text("SELECT 1"))
    with engine.begin() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert ran == []


@pytest.mark.parametrize("backend", ["postgresql"])  # a PostgreSQL server process ends; SQLite has none
def test_a_driver_statement_that_lost_its_connection_raises_the_store_error(engine) -> None:  # type: ignore[no-untyped-def]
    one = DriverStatement(select(literal(1)))
    with engine.connect() as admin, reader(engine).connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
        with pytest.raises(OperationalError):  # a 503 from the API, not the driver's own error (a 500)
            one.first(conn, {})
        assert conn.invalidated  # dropped, never pooled again
    with reader(engine).connect() as conn:
        assert one.first(conn, {}) == (1,)


def test_reads_run_outside_a_transaction(engine) -> None:  # type: ignore[no-untyped-def]
    def in_transaction(conn) -> bool:  # type: ignore[no-untyped-def]
        driver = conn.connection.dbapi_connection
        return driver.in_transaction if engine.dialect.name == "sqlite" else driver.info.transaction_status != 0

    with reader(engine).connect() as conn:
        conn.execute(select(1)).all()
        assert not in_transaction(conn)  # no BEGIN, no ROLLBACK on release
    with engine.connect() as conn:  # the same pooled connection, back to transactions for writers
        conn.execute(select(1)).all()
        assert in_transaction(conn)


def test_driver_statements_run_in_their_connections_transaction(engine) -> None:  # type: ignore[no-untyped-def]
    by_name = DriverStatement(select(sources.c.id, sources.c.name, sources.c.created_at)
                              .where(sources.c.name == bindparam("name"), sources.c.created_at >= literal(NOW)))
    with engine.connect() as conn:
        created, _ = create_source(conn, name="driven", now=NOW)
        assert by_name.first(conn, {"name": "driven"})[:2] == (created.id, "driven")  # its own uncommitted row
        assert by_name.first(conn, {"name": "other"}) is None
        conn.rollback()
    with reader(engine).connect() as conn:
        assert by_name.first(conn, {"name": "driven"}) is None
        with pytest.raises(DBAPIError):  # as SQLAlchemy raises it, so the API maps it (503 / 400), never a 500
            DriverStatement(text("SELECT * FROM no_such_table")).first(conn, {})


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite's pool is not sized: one writer, readers beside it
def test_the_postgresql_pool_is_sized_by_the_settings(settings: Settings) -> None:
    engine = create_store_engine(settings.model_copy(update={"database_pool_size": 3, "database_max_overflow": 1}))
    try:
        held = [engine.connect() for _ in range(4)]  # the pool's 3 and 1 overflow
        fifth = threading.Thread(target=lambda: engine.connect().close())
        fifth.start()
        fifth.join(0.5)
        assert fifth.is_alive()  # no sixth connection to the server: it waits for one back
        held.pop().close()
        fifth.join(10)
        assert not fifth.is_alive()
        for conn in held:
            conn.close()
        assert engine.pool.checkedin() == 3  # the overflow connection is closed on release, the pool's 3 kept
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite has no socket to check
def test_a_pooled_connection_past_descriptor_1024_is_checked_out(settings: Settings) -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200:
        pytest.skip("this process may not open 1,200 files")
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # a busy server's open sockets
    engine = create_store_engine(settings)
    try:
        for _ in range(2):  # the second checkout checks the pooled connection's descriptor
            with engine.connect() as conn:
                assert conn.connection.dbapi_connection.fileno() > 1024
                assert conn.execute(select(1)).scalar_one() == 1
    finally:
        engine.dispose()
        for fd in held:
            os.close(fd)
