"""Stores filled with millions of realistic events, fast: straight into the tables, not through the API.

The point is a store of the size production reaches (big unique index on messageId, table far
larger than the cache), so rows only need the right shape and size: payloads are formatted from
templates of the load generator's messages (same keys, ~340 bytes) and messageIds are random
36-character strings, so new ones land all over the index as real uuid4s do.

SQLite: one ``executemany`` transaction on a connection with the journal off (a failed build is
thrown away, not recovered), cached under ``bench/out/cache`` and copied per run.
PostgreSQL: ``COPY ... FREEZE`` with the secondary indexes dropped and rebuilt after (one sort
each instead of 10M random index inserts), foreign-key triggers off for the load, then VACUUM ANALYZE;
ours' and the ceiling's stores are fed from one generator at once.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bench.ceiling import create_ceiling_table
from bench.load import PAGES, PLANS, SDK_VERSION, TRACK_EVENTS, USERS
from cdp.config import Settings
from cdp.setup import prepare_store
from cdp.store.db import MIGRATIONS, create_store_engine
from cdp.store.tables import sources

CHUNK = 50_000
# Bump when the generated rows change, so that cached SQLite files are rebuilt.
FORMAT = 2
EVENTS_COLUMNS = ("source_id", "message_id", "type", "event", "user_id", "anonymous_id", "timestamp",
                  "original_timestamp", "sent_at", "received_at", "payload", "profile_id")
CEILING_COLUMNS = ("message_id", "payload")
TABLES = {"ours": ("events", EVENTS_COLUMNS), "ceiling": ("ceiling_events", CEILING_COLUMNS)}

_LIBRARY = f'"context":{{"library":{{"name":"analytics-python","version":"{SDK_VERSION}"}}}}'
_TRACK = ('{"integrations":{},"anonymousId":null,"properties":{"product_id":"p-%d","price":%.2f,"currency":"USD"},'
          '"timestamp":"%s",' + _LIBRARY + ',"userId":"%s","type":"track","event":"%s","messageId":"%s"}')
_PAGE = ('{"integrations":{},"anonymousId":%s,"properties":{"path":"%s","url":"https://example.com%s","title":"%s"},'
         '"timestamp":"%s","category":null,' + _LIBRARY + ',"userId":%s,"type":"page","name":"%s","messageId":"%s"}')
_IDENTIFY = ('{"integrations":{},"anonymousId":null,"timestamp":"%s",' + _LIBRARY + ',"type":"identify",'
             '"userId":"%s","traits":{"email":"user%d@example.com","name":"User %d","plan":"%s"},"messageId":"%s"}')


def event_rows(count: int, *, source_id: int, seed: int = 7) -> Iterator[list[tuple]]:
    """``count`` events-table rows in chunks, event times spread over the last 90 days.

    Timestamps are naive UTC text as SQLAlchemy writes them to SQLite ("YYYY-MM-DD HH:MM:SS.ffffff").
    """
    rng = random.Random(seed)
    end = datetime.now(UTC).replace(tzinfo=None)
    start = end - timedelta(days=90)
    step = (end - start) / max(count, 1)
    done = 0
    while done < count:
        n = min(CHUNK, count - done)
        hexes = os.urandom(16 * n).hex()  # one call per chunk: far cheaper than uuid4() per row
        rows = []
        for i in range(n):
            h = hexes[32 * i: 32 * i + 32]
            message_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            at = start + step * (done + i)
            stamp = at.isoformat(" ", "microseconds")
            sent = (at + timedelta(seconds=3)).isoformat(" ", "microseconds")
            iso = stamp[:10] + "T" + stamp[11:23] + "+00:00"
            user = rng.randrange(USERS)
            user_id = f"user-{user:06d}"
            # Attributed, as a store's past events are: each user's profile, one per anonymous visitor.
            profile_id = user + 1
            draw = rng.random()
            if draw < 0.6:
                event = TRACK_EVENTS[user % len(TRACK_EVENTS)]
                payload = _TRACK % (rng.randrange(5000), rng.uniform(5, 200), iso, user_id, event, message_id)
                row = (source_id, message_id, "track", event, user_id, None, stamp, None, sent, sent, payload, profile_id)
            elif draw < 0.9:
                name, path = PAGES[user % len(PAGES)]
                anonymous = draw < 0.7
                anonymous_id = message_id[::-1] if anonymous else None  # any random 36 characters
                payload = _PAGE % (f'"{anonymous_id}"' if anonymous else "null", path, path, name, iso,
                                   "null" if anonymous else f'"{user_id}"', name, message_id)
                row = (source_id, message_id, "page", name, None if anonymous else user_id, anonymous_id,
                       stamp, None, sent, sent, payload, USERS + done + i + 1 if anonymous else profile_id)
            else:
                payload = _IDENTIFY % (iso, user_id, user, user, PLANS[user % len(PLANS)], message_id)
                row = (source_id, message_id, "identify", None, user_id, None, stamp, None, sent, sent, payload, profile_id)
            rows.append(row)
        done += n
        yield rows


class Interrupted(Exception):
    """The bench is stopping: a fill gives up between chunks."""


def schema_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head() or "none"


def sqlite_cache_path(cache_dir: Path, kind: str, count: int) -> Path:
    return cache_dir / f"{kind}-{count}-rev{schema_revision()}-v{FORMAT}.sqlite"


def prepare_empty(settings: Settings, kind: str) -> int | None:
    """Schema (and for ours the bench's source) in a new store; the source id for ours.

    Not to be run in parallel threads: alembic keeps the running migration in module globals.
    """
    if kind == "ours":
        # pool=True: create_store_engine(pool=False) fails on PostgreSQL (NullPool with pool_size).
        engine = prepare_store(settings)
        with engine.connect() as conn:
            source_id = conn.execute(select(sources.c.id)).scalar_one()
    else:
        engine = create_store_engine(settings)
        create_ceiling_table(engine)
        source_id = None
    engine.dispose()
    return source_id


def fill_sqlite(path: Path, kind: str, count: int, source_id: int | None, stop: threading.Event) -> None:
    """Insert ``count`` rows into the table of ``kind`` in the (prepared, unused) SQLite file ``path``."""
    table, columns = TABLES[kind]
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    con = sqlite3.connect(path, isolation_level=None)
    try:
        # A half-built file is deleted, never used: no journal, no fsync, a big cache for the index.
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-3000000")
        con.execute("BEGIN")
        for rows in event_rows(count, source_id=source_id or 0):
            if stop.is_set():
                raise Interrupted
            con.executemany(sql, rows if kind == "ours" else [(r[1], r[10]) for r in rows])
        con.execute("COMMIT")
        con.execute("PRAGMA journal_mode=WAL")  # as the product leaves it
    finally:
        con.close()


def copy_sqlite(cached: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    # On disk now, rather than gigabytes of dirty pages written back during the measured run.
    with open(target, "rb+") as copied:
        os.fsync(copied.fileno())


def libpq_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def fill_postgres(jobs: list[tuple[str, str, int | None]], count: int, stop: threading.Event) -> None:
    """COPY ``count`` rows into each (empty, migrated) store of ``jobs``: (database URL, kind, source id).

    The rows are generated once and streamed to every store's COPY at the same time, so that the
    Python side is paid once while each PostgreSQL backend parses its copy on its own core.
    """
    source_id = next((job[2] for job in jobs if job[2] is not None), 0)
    with ExitStack() as connections:
        streams = []
        for database_url, kind, _ in jobs:
            table, columns = TABLES[kind]
            conn = connections.enter_context(psycopg.connect(libpq_url(database_url)))
            conn.execute("SET maintenance_work_mem = '1GB'")
            # Replica role skips the per-row foreign-key trigger to sources (all rows use one source).
            conn.execute("SET session_replication_role = replica")
            # One sorted build per index after the load instead of 10M random inserts into each.
            # Definitions are read from the store, so that they follow the migrations.
            rebuild = secondary_indexes(conn, table)
            for name, _definition, is_constraint in rebuild:
                conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}" if is_constraint else f"DROP INDEX {name}")
            # FREEZE needs the table truncated in this transaction; it spares the later VACUUM a rewrite.
            conn.execute(f"TRUNCATE {table}")
            streams.append((conn, kind, rebuild))
        with ExitStack() as copies:
            writers = []
            for conn, kind, _ in streams:
                table, columns = TABLES[kind]
                copy = copies.enter_context(
                    conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FREEZE)"))
                writers.append((copy, kind))
            for rows in event_rows(count, source_id=source_id):
                if stop.is_set():
                    raise Interrupted
                for copy, kind in writers:
                    copy.write(copy_text(rows, kind))
        with ThreadPoolExecutor(len(streams)) as pool:
            list(pool.map(lambda stream: _finish(*stream), streams))


def secondary_indexes(conn: psycopg.Connection, table: str, *, foreign_keys: bool = False) -> list[tuple[str, str, bool]]:
    """(name, definition, is a constraint) of the table's indexes but its primary key (and its
    foreign keys if asked: a load that drops them checks them once, when they are added back)."""
    kinds = ["u", "x", "f"] if foreign_keys else ["u", "x"]
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid), true FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = ANY(%s)", (table, kinds)).fetchall()
    indexes = conn.execute(
        "SELECT indexname, indexdef, false FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)", (table, table)).fetchall()
    return constraints + indexes


def _finish(conn: psycopg.Connection, kind: str, rebuild: list[tuple[str, str, bool]]) -> None:
    table, _ = TABLES[kind]
    for name, definition, is_constraint in rebuild:
        conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}" if is_constraint else definition)
    conn.commit()
    conn.autocommit = True
    conn.execute("SET session_replication_role = DEFAULT")
    # Without it autovacuum would scan the new 10M rows in the middle of a measured run.
    conn.execute(f"VACUUM (ANALYZE) {table}")


def copy_text(rows: list[tuple], kind: str) -> str:
    """Rows as text COPY data (\\N is NULL; the generated text has no tab, newline or backslash)."""
    if kind == "ceiling":
        return "".join([f"{r[1]}\t{r[10]}\n" for r in rows])
    n = "\\N"
    # original_timestamp (r[7]) is never set: the load's messages carry no originalTimestamp.
    return "".join([f"{r[0]}\t{r[1]}\t{r[2]}\t{n if r[3] is None else r[3]}\t{n if r[4] is None else r[4]}\t"
                    f"{n if r[5] is None else r[5]}\t{r[6]}+00\t{n}\t{r[8]}+00\t{r[9]}+00\t{r[10]}\t{r[11]}\n" for r in rows])
