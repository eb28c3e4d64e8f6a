"""Events for the features benchmark: N profiles x M events, straight into the store's tables.

Every profile gets exactly M events over its own active period inside one year, in sessions of a
few events minutes apart: pages, screens, identifies, product views / adds / searches and orders
(with revenue and 1-3 product lines in 12 categories); 1 % arrive up to 3 days late. Rows are
written in arrival order, as ingestion writes them, and carry the Segment payload a server
library sends (about 300 bytes). The same seed gives the same rows on both stores.

SQLite: ``executemany`` in one transaction with the journal off (a failed build is deleted).
PostgreSQL: ``COPY`` with the secondary indexes dropped during the load and rebuilt after, then
``VACUUM ANALYZE`` (what a production table of that age looks like to the planner).
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bench.preload import secondary_indexes

END = datetime(2026, 1, 1, tzinfo=UTC)  # the data stops here
YEAR_US = 365 * 86_400_000_000
CHUNK = 250_000
COLUMNS = ("source_id", "message_id", "type", "event", "user_id", "timestamp", "sent_at", "received_at", "payload",
           "profile_id")
CATEGORIES = ("Electronics", "Home & Kitchen", "Beauty", "Clothing", "Sports & Outdoors", "Toys & Games", "Books",
              "Grocery", "Pet Supplies", "Garden", "Health", "Office")
# (type, event name, share of events)
KINDS = (("page", "Home", 0.30), ("screen", "Product", 0.08), ("identify", None, 0.04),
         ("track", "Product Viewed", 0.30), ("track", "Product Added", 0.10), ("track", "Products Searched", 0.12),
         ("track", "Order Completed", 0.06))
_PAGE, _SCREEN, _IDENTIFY, _VIEWED, _ADDED, _SEARCHED, _ORDER = range(len(KINDS))
_LIBRARY = '"context":{"library":{"name":"analytics-python","version":"2.3.3"},"ip":"203.0.113.9","locale":"en-US"}'
_PLANS = ("free", "plus", "premium")
_QUERIES = ("headphones", "yoga mat", "coffee beans", "novel", "desk lamp", "sneakers")


@dataclass(frozen=True)
class Shape:
    profiles: int
    events_per_profile: int
    seed: int = 7

    @property
    def events(self) -> int:
        return self.profiles * self.events_per_profile

    @property
    def label(self) -> str:
        return f"{self.profiles // 1000}k x {self.events_per_profile}"


def _draw(shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per event, in arrival order: profile index, event time and arrival time (us before END), kind."""
    rng = np.random.default_rng(shape.seed)
    n, m = shape.profiles, shape.events_per_profile
    first = rng.uniform(0.0, 0.95, n) * YEAR_US  # microseconds after END - 1 year
    last = first + (YEAR_US - first) * rng.uniform(0.2, 1.0, n)  # many stop early: churn
    sessions = max(1, m // 4)
    session_at = first[:, None] + rng.random((n, sessions)) * (last - first)[:, None]
    pick = rng.integers(0, sessions, (n, m))
    at = np.take_along_axis(session_at, pick, axis=1) + rng.uniform(0, 20 * 60e6, (n, m))
    profile = np.repeat(np.arange(n, dtype=np.int64), m)
    at = at.ravel().astype(np.int64)
    delay = rng.uniform(0.2e6, 5e6, at.size).astype(np.int64)
    late = rng.random(at.size) < 0.01
    delay[late] += rng.integers(0, 3 * 86_400_000_000, late.sum())
    arrival = at + delay
    shares = np.array([k[2] for k in KINDS])
    kind = rng.choice(len(KINDS), at.size, p=shares / shares.sum()).astype(np.int8)
    order = np.argsort(arrival, kind="stable")
    start_us = YEAR_US  # times are stored as offsets from END - 1 year
    return profile[order], at[order] - start_us, arrival[order] - start_us, kind[order]


def _iso(offsets_us: np.ndarray) -> np.ndarray:
    moments = np.datetime64(END.replace(tzinfo=None), "us") + offsets_us.astype("timedelta64[us]")
    return np.datetime_as_string(moments, unit="us")


def _text(values: np.ndarray | list) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _padded(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    return _join(prefix, pc.utf8_lpad(_text(numbers), width, "0"))


def _money(cents: np.ndarray) -> pa.Array:
    """Cents as a JSON number with two decimals, exactly (``12.30``)."""
    return _join(_text(cents // 100), ".", pc.utf8_lpad(_text(cents % 100), 2, "0"))


def _join(*parts: pa.Array | str, skip_nulls: bool = False, separator: str = "") -> pa.Array:
    options = pc.JoinOptions(null_handling="skip" if skip_nulls else "emit_null")
    return pc.binary_join_element_wise(*parts, separator, options=options)


_PAGE_BODY = '"name":"Home","properties":{"path":"/","url":"https://shop.example.com/","title":"Example Shop"},'


def chunks(shape: Shape, *, source_id: int) -> Iterator[pa.Table]:
    """The events table's rows (``COLUMNS``) in chunks; times as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC).

    Built column by column with Arrow's string kernels: a Python loop per row takes an hour for
    50M events, this takes minutes.
    """
    profile, at, arrival, kind = _draw(shape)
    rng = np.random.default_rng(shape.seed + 1)
    type_names = pa.array([k[0] for k in KINDS])
    event_names = pa.array([k[1] for k in KINDS])
    for lo in range(0, len(profile), CHUNK):
        hi = min(lo + CHUNK, len(profile))
        n = hi - lo
        kinds = kind[lo:hi]
        message_id = pa.array(np.frombuffer(rng.bytes(16 * n).hex().encode(), dtype="S32").astype(str))
        user = _padded("u", profile[lo:hi], 7)
        stamp, received = pa.array(_iso(at[lo:hi])), pa.array(_iso(arrival[lo:hi]))
        drawn = _Drawn(
            profile=profile[lo:hi], message_id=message_id, user=user, event=event_names.take(kinds),
            items=rng.integers(0, 5000, n), categories=rng.integers(0, len(CATEGORIES), (n, 3)),
            cents=np.round(rng.lognormal(3.2, 0.8, (n, 3)) * 100).astype(np.int64), lines=rng.integers(1, 4, n),
            quantities=rng.integers(1, 3, (n, 3)),
        )
        type_name = type_names.take(kinds)
        head = _join('{"type":"', type_name, '","messageId":"', message_id, '","userId":"', user, '","timestamp":"',
                     stamp, 'Z",')
        by_kind = np.argsort(kinds, kind="stable")
        bounds = np.searchsorted(kinds[by_kind], np.arange(len(KINDS) + 1))
        parts = []
        for k in range(len(KINDS)):
            rows = by_kind[bounds[k]:bounds[k + 1]]
            parts.append(_join(head.take(rows), _body(k, rows, drawn), _LIBRARY + "}"))
        payload = pa.concat_arrays(parts).take(np.argsort(by_kind))
        stamp_text, received_text = (pc.replace_substring(t, "T", " ", max_replacements=1) for t in (stamp, received))
        yield pa.table([pa.array(np.full(n, source_id)), message_id, type_name, drawn.event, user, stamp_text,
                        received_text, received_text, payload, pa.array(profile[lo:hi] + 1)], names=list(COLUMNS))


@dataclass(frozen=True)
class _Drawn:
    """One chunk's drawn values, a row each (``categories``, ``cents``, ``quantities``: 3 lines)."""

    profile: np.ndarray
    message_id: pa.Array
    user: pa.Array
    event: pa.Array
    items: np.ndarray
    categories: np.ndarray
    cents: np.ndarray
    lines: np.ndarray
    quantities: np.ndarray


def _body(kind: int, rows: np.ndarray, drawn: _Drawn) -> pa.Array:
    """The payload between its head and its context, for ``rows`` (all of that kind)."""
    if kind == _PAGE:
        return pa.array([_PAGE_BODY] * len(rows))
    product = _padded("p", drawn.items[rows], 5)
    if kind == _SCREEN:
        return _join('"name":"Product","properties":{"product_id":"', product, '"},')
    if kind == _IDENTIFY:
        return _join('"traits":{"email":"', drawn.user.take(rows), '@example.com","plan":"',
                     pa.array(_PLANS).take(drawn.profile[rows] % 3), '"},')
    if kind == _SEARCHED:
        return _join('"event":"Products Searched","properties":{"query":"',
                     pa.array(_QUERIES).take(drawn.items[rows] % 6), '"},')
    if kind == _ORDER:
        return _order(rows, drawn)
    return _join('"event":"', drawn.event.take(rows), '","properties":{"product_id":"', product, '","category":"',
                 pa.array(CATEGORIES).take(drawn.categories[rows, 0]), '","price":', _money(drawn.cents[rows, 0]),
                 ',"currency":"USD"},')


def _order(rows: np.ndarray, drawn: _Drawn) -> pa.Array:
    """Order Completed bodies: revenue and 1-3 product lines."""
    count = drawn.lines[rows]
    rendered = []
    for j in range(3):
        line = _join('{"product_id":"', _padded("p", drawn.items[rows] + j, 5), '","category":"',
                     pa.array(CATEGORIES).take(drawn.categories[rows, j]), '","price":', _money(drawn.cents[rows, j]),
                     ',"quantity":', _text(drawn.quantities[rows, j]), "}")
        rendered.append(pc.if_else(pa.array(j < count), line, pa.scalar(None, pa.string())))
    revenue = (drawn.cents[rows] * drawn.quantities[rows] * (np.arange(3) < count[:, None])).sum(axis=1)
    return _join('"event":"Order Completed","properties":{"order_id":"',
                 pc.utf8_slice_codeunits(drawn.message_id.take(rows), 0, 12), '","revenue":', _money(revenue),
                 ',"currency":"USD","products":[', _join(*rendered, skip_nulls=True, separator=","), "]},")


def fill_sqlite(path: str, shape: Shape, *, source_id: int) -> None:
    """Append the rows to the (migrated) SQLite store at ``path``; stores times as SQLAlchemy does."""
    sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-2000000")
        # The store's own secondary indexes, rebuilt after the load: they follow the migrations.
        rebuild = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
                              "AND sql IS NOT NULL").fetchall()
        for name, _definition in rebuild:
            con.execute(f"DROP INDEX {name}")
        con.execute("BEGIN")
        for chunk in chunks(shape, source_id=source_id):
            con.executemany(sql, zip(*(column.to_pylist() for column in chunk.columns)))
        con.execute("COMMIT")
        for _name, definition in rebuild:
            con.execute(definition)
        con.execute("ANALYZE")
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def fill_postgres(url: str, shape: Shape, *, source_id: int) -> None:
    """COPY the rows into the (migrated, empty) PostgreSQL store at libpq ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET TIME ZONE 'UTC'")  # the rows' times are UTC without an offset
        with conn.transaction():
            # Rebuilt after the load from the store's own definitions, so that they follow the migrations;
            # the foreign key too (one check of the whole table instead of one per row). The triggers
            # stay: they fill purchase_facts as they would on ingestion.
            rebuild = secondary_indexes(conn, "events", foreign_keys=True)
            for name, _definition, is_constraint in rebuild:
                conn.execute(f"ALTER TABLE events DROP CONSTRAINT {name}" if is_constraint else f"DROP INDEX {name}")
            conn.execute("TRUNCATE events")  # lets COPY FREEZE skip the later rewrite of hint bits
            statement = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv, FREEZE)"
            with conn.cursor().copy(statement) as copy:
                for chunk in chunks(shape, source_id=source_id):
                    csv = io.BytesIO()  # an unquoted empty field (a NULL event name) reads as NULL
                    pacsv.write_csv(chunk, csv, pacsv.WriteOptions(include_header=False))
                    copy.write(csv.getbuffer())
            for name, definition, is_constraint in rebuild:
                conn.execute(f"ALTER TABLE events ADD CONSTRAINT {name} {definition}" if is_constraint else definition)
        conn.execute("VACUUM (ANALYZE) events")
