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

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import psycopg

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
_HEAD = '{"type":"%s","messageId":"%s","userId":"%s","timestamp":"%sZ",'
_TEMPLATES = {
    _PAGE: _HEAD + '"name":"Home","properties":{"path":"/","url":"https://shop.example.com/","title":"Example Shop"},'
    + _LIBRARY + "}",
    _SCREEN: _HEAD + '"name":"Product","properties":{"product_id":"p%05d"},' + _LIBRARY + "}",
    _IDENTIFY: _HEAD + '"traits":{"email":"%s@example.com","plan":"%s"},' + _LIBRARY + "}",
    _VIEWED: _HEAD + '"event":"%s","properties":{"product_id":"p%05d","category":"%s","price":%.2f,"currency":"USD"},'
    + _LIBRARY + "}",
    _SEARCHED: _HEAD + '"event":"Products Searched","properties":{"query":"%s"},' + _LIBRARY + "}",
    _ORDER: _HEAD + '"event":"Order Completed","properties":{"order_id":"%s","revenue":%.2f,"currency":"USD",'
    '"products":[%s]},' + _LIBRARY + "}",
}
_LINE = '{"product_id":"p%05d","category":"%s","price":%.2f,"quantity":%d}'
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


def _iso(offsets_us: np.ndarray) -> list[str]:
    moments = np.datetime64(END.replace(tzinfo=None), "us") + offsets_us.astype("timedelta64[us]")
    return np.datetime_as_string(moments, unit="us").tolist()


def rows(shape: Shape, *, source_id: int) -> Iterator[list[tuple]]:
    """The events table's rows in chunks; times as 'YYYY-MM-DDTHH:MM:SS.ffffff' (naive UTC)."""
    profile, at, arrival, kind = _draw(shape)
    rng = np.random.default_rng(shape.seed + 1)
    for lo in range(0, len(profile), CHUNK):
        hi = min(lo + CHUNK, len(profile))
        n = hi - lo
        hexes = os.urandom(16 * n).hex()
        stamps, arrivals = _iso(at[lo:hi]), _iso(arrival[lo:hi])
        items = rng.integers(0, 5000, n).tolist()
        categories = rng.integers(0, len(CATEGORIES), (n, 3)).tolist()
        prices = np.round(rng.lognormal(3.2, 0.8, (n, 3)), 2).tolist()
        lines = rng.integers(1, 4, n).tolist()
        quantities = rng.integers(1, 3, (n, 3)).tolist()
        out = []
        for i, (p, k) in enumerate(zip(profile[lo:hi].tolist(), kind[lo:hi].tolist())):
            message_id = hexes[32 * i: 32 * i + 32]
            user = f"u{p:07d}"
            stamp, received = stamps[i], arrivals[i]
            kind_name, event, _ = KINDS[k]
            if k == _PAGE:
                payload = _TEMPLATES[_PAGE] % (kind_name, message_id, user, stamp)
            elif k == _SCREEN:
                payload = _TEMPLATES[_SCREEN] % (kind_name, message_id, user, stamp, items[i])
            elif k == _IDENTIFY:
                payload = _TEMPLATES[_IDENTIFY] % (kind_name, message_id, user, stamp, user, _PLANS[p % 3])
            elif k == _SEARCHED:
                payload = _TEMPLATES[_SEARCHED] % (kind_name, message_id, user, stamp, _QUERIES[items[i] % 6])
            elif k == _ORDER:
                products = ",".join(
                    _LINE % (items[i] + j, CATEGORIES[categories[i][j]], prices[i][j], quantities[i][j])
                    for j in range(lines[i])
                )
                revenue = sum(prices[i][j] * quantities[i][j] for j in range(lines[i]))
                payload = _TEMPLATES[_ORDER] % (kind_name, message_id, user, stamp, message_id[:12], revenue, products)
            else:
                payload = _TEMPLATES[_VIEWED] % (kind_name, message_id, user, stamp, event, items[i],
                                                 CATEGORIES[categories[i][0]], prices[i][0])
            out.append((source_id, message_id, kind_name, event, user, stamp, received, received, payload, p + 1))
        yield out


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
        for chunk in rows(shape, source_id=source_id):
            con.executemany(sql, [(*r[:5], r[5].replace("T", " "), r[6].replace("T", " "), r[7].replace("T", " "),
                                   *r[8:]) for r in chunk])
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
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")  # no per-row FK check to sources
            # Rebuilt after the load from the store's own definitions, so that they follow the migrations.
            rebuild = secondary_indexes(conn, "events")
            for name, _definition, is_constraint in rebuild:
                conn.execute(f"ALTER TABLE events DROP CONSTRAINT {name}" if is_constraint else f"DROP INDEX {name}")
            conn.execute("TRUNCATE events")  # lets COPY FREEZE skip the later rewrite of hint bits
            statement = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN WITH (FREEZE)"
            with conn.cursor().copy(statement) as copy:
                for chunk in rows(shape, source_id=source_id):
                    copy.write("".join(
                        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3] or chr(92) + 'N'}\t{r[4]}\t{r[5]}+00\t{r[6]}+00\t{r[7]}+00\t"
                        f"{r[8]}\t{r[9]}\n"
                        for r in chunk
                    ))
            for name, definition, is_constraint in rebuild:
                conn.execute(f"ALTER TABLE events ADD CONSTRAINT {name} {definition}" if is_constraint else definition)
        conn.execute("VACUUM (ANALYZE) events")

