"""Profile benchmark: Profile API latency on a big store, and ingestion with identity resolution.

    python -m bench.profiles             # 1M profiles, 20 s runs (~10 min; the first run builds the store)
    python -m bench.profiles --quick     # 100k profiles, 8 s runs

1. **Profile API**: a store of N people (3 identifiers and 6 traits each: profiles, identities and
   profile_traits filled straight into the tables, cached under bench/out/cache for SQLite); then
   ``cdp serve --workers 2`` answers ``GET /v1/profiles/user_id:<random person>/traits``: first from
   concurrent keep-alive clients as fast as it answers (the throughput; latency there is mostly
   queueing), then at a steady ``--rate`` sent on schedule (latency at that load); p50 / p99.
2. **Ingestion with identity resolution** (the bench-ingest load, on an empty store): first as
   shipped (on SQLite the API acknowledges a burst at full speed and attribution to profiles
   follows when it eases; on PostgreSQL returning people's calls are attributed as they are
   stored; see cdp.events.attribution and cdp.events.ingest.store_pending), then with profiles
   first: calls of returning people attributed as they are stored and the follower taking the
   writer whenever it can (``CDP_ATTRIBUTION_AT_INGEST=true``, ``CDP_ATTRIBUTION_IDLE_MS=0``),
   counting events per second until every acknowledged event is attributed; beside a bare server
   that only stores (bench.ceiling) under the same load. The second's rate over the first's is
   "identity resolution's cost"; over the bare server's, what identity resolution leaves of a
   bare insert.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psycopg
import uvloop

from bench.ingest import (OUT, WRITE_KEY, Target, create_database, drop_database, prepared_stores, run_one, summary,
                          to_sqlalchemy_url)
from bench.load import BATCH_SIZE, collector_paused, make_bodies, percentile
from bench.preload import schema_revision
from bench.report import Report, run
from cdp.config import Settings
from cdp.demo.server import start_server
from cdp.setup import prepare_store

TRAITS = ("plan", "name", "country", "lifetime_orders", "newsletter", "last_seen_page")
CHUNK = 50_000
PLANS = ("free", "starter", "pro", "enterprise")
ADMIN_TOKEN = "bench-admin-token-2b7e151628aed2a6"


def person_rows(count: int) -> Iterator[tuple[list[tuple], list[tuple], list[tuple]]]:
    """Chunks of (profiles, identities, profile_traits) rows for people 1..count (ids = numbers).

    Times are ISO text, which both SQLite (as SQLAlchemy stores them) and PostgreSQL's COPY take.
    """
    rng = random.Random(11)
    now = datetime.now(UTC).replace(tzinfo=None)
    for start in range(1, count + 1, CHUNK):
        people, ids, traits = [], [], []
        for person in range(start, min(start + CHUNK, count + 1)):
            seen = (now - timedelta(minutes=rng.randrange(525_600))).isoformat(" ", "microseconds")
            people.append((person, "users", seen, seen))
            for kind, value in (("user_id", f"user-{person:07d}"), ("anonymous_id", f"anon-{person:07d}"),
                                ("email", f"user{person}@example.com")):
                ids.append(("users", kind, value, person, 1, seen, seen))
            values = (f'"{rng.choice(PLANS)}"', f'"User {person}"', f'"{rng.choice(("NO", "SE", "DE", "FR"))}"',
                      str(rng.randrange(40)), rng.choice(("true", "false")), f'"/products/p-{rng.randrange(5000)}"')
            traits.extend((person, name, value, "identify", 1, seen, seen) for name, value in zip(TRAITS, values))
        yield people, ids, traits


_TABLES = (
    ("profiles", ("id", "entity", "created_at", "updated_at")),
    ("identities", ("entity", "type", "value", "profile_id", "source_id", "seen_at", "created_at")),
    ("profile_traits", ("profile_id", "name", "value", "class", "source_id", "event_time", "received_at")),
)


def build_sqlite(path: Path, count: int) -> None:
    """A store of ``count`` people at ``path``, built aside and cached (journal off: a failed build is thrown away)."""
    building = path.with_suffix(".building")
    building.unlink(missing_ok=True)
    prepare_store(Settings(home=building.parent, database_url=f"sqlite:///{building}", write_keys="bench")).dispose()
    conn = sqlite3.connect(building)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    for chunks in person_rows(count):
        for (table, columns), rows in zip(_TABLES, chunks, strict=True):
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    os.replace(building, path)


def fill_postgres(url: str, count: int) -> None:
    prepare_store(Settings(home=OUT, database_url=url, write_keys="bench")).dispose()
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        for chunks in person_rows(count):
            for (table, columns), rows in zip(_TABLES, chunks, strict=True):
                with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        conn.execute("SELECT setval(pg_get_serial_sequence('profiles', 'id'), %s)", (count,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        # The load's gigabyte of WAL otherwise gets its checkpoint during the measured runs: a
        # minute of writes a settled store does not have (it made p99 at 300 req/s 175 ms one run, 14 ms the next).
        conn.execute("CHECKPOINT")


async def get_traits(session: aiohttp.ClientSession, url: str, count: int, rng: random.Random) -> bool:
    """GET the traits of a random person of 1..``count``; whether the answer was a 200."""
    path = f"{url}/v1/profiles/user_id:user-{rng.randrange(1, count + 1):07d}/traits"
    async with session.get(path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as answer:
        await answer.read()
        return answer.status == 200


async def hammer(url: str, count: int, *, seconds: float, concurrency: int) -> tuple[int, list[float], int]:
    """GET the traits of random people for ``seconds``; (answers, latencies in ms, errors)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(5)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if await get_traits(session, url, count, rng):
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return len(latencies), latencies, errors


async def at_rate(url: str, count: int, *, rate: float, seconds: float) -> tuple[list[float], int]:
    """GET the traits of random people at ``rate`` requests/s, whatever the answers take (an open
    loop, as independent callers arrive); (latencies in ms, errors). Each latency runs from the
    time the request was due, so a server that falls behind is charged for the wait too."""
    latencies: list[float] = []
    errors = 0
    rng = random.Random(7)

    async def one(session: aiohttp.ClientSession, due: float) -> None:
        nonlocal errors
        try:
            ok = await get_traits(session, url, count, rng)
        except aiohttp.ClientError:
            ok = False
        if ok:
            latencies.append((time.perf_counter() - due) * 1000)
        else:
            errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        with collector_paused():
            start = time.perf_counter()
            tasks = []
            for n in range(int(rate * seconds)):
                due = start + n / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(one(session, due)))
            await asyncio.gather(*tasks)
    return latencies, errors


def fill_people(home: Path, url: str | None, count: int, *, log) -> None:  # type: ignore[no-untyped-def]
    """Put the store of ``count`` people in ``home`` (SQLite, copied from the cache) or at ``url``."""
    started = time.perf_counter()
    if url is None:
        cached = OUT / "cache" / f"profiles-{count}-{schema_revision()}.sqlite"
        cached.parent.mkdir(parents=True, exist_ok=True)
        if not cached.exists():
            build_sqlite(cached, count)
        shutil.copyfile(cached, home / "cdp.sqlite")
    else:
        fill_postgres(url, count)
    log(f"store of {count:,} people ready in {time.perf_counter() - started:.0f} s")


@contextmanager
def scratch_store(store: str, name: str, args: argparse.Namespace) -> Iterator[tuple[Path, str | None]]:
    """A CDP_HOME and, on PostgreSQL, a database of their own (``None``: SQLite under the home); removed after."""
    home = OUT / "runs" / f"{os.getpid()}-{name}-{store}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    database = f"cdp_bench_{name}_{os.getpid()}" if store == "postgresql" else None
    try:
        if database:
            create_database(args.pg, database)
        yield home, to_sqlalchemy_url(psycopg.conninfo.make_conninfo(args.pg, dbname=database)) if database else None
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if database:
            drop_database(args.pg, database)


def profile_api(store: str, args: argparse.Namespace, log) -> None:  # type: ignore[no-untyped-def]
    with scratch_store(store, "profiles", args) as (home, url):
        fill_people(home, url, args.profiles, log=lambda line: log(f"  {store}: {line}"))
        server = start_server(Settings(home=home, database_url=url), workers=2, log=home / "server.log",
                              admin_token=ADMIN_TOKEN)
        try:
            # The client on uvloop, as the server is: asyncio's own loop costs the shared cores more.
            uvloop.run(hammer(server.url, args.profiles, seconds=2, concurrency=args.concurrency))  # warm-up
            answers, latencies, errors = uvloop.run(
                hammer(server.url, args.profiles, seconds=args.seconds, concurrency=args.concurrency))
            paced, paced_errors = uvloop.run(at_rate(server.url, args.profiles, rate=args.rate, seconds=args.seconds))
        finally:
            server.stop()
        log(f"  {store} Profile API traits, as fast as it answers: {answers / args.seconds:,.0f} req/s, "
            f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, errors {errors} "
            f"({args.concurrency} clients, each waiting for its answer)")
        log(f"  {store} Profile API traits at {args.rate:,.0f} req/s: p50 {percentile(paced, 50):.1f} ms, "
            f"p99 {percentile(paced, 99):.1f} ms, errors {paced_errors} (requests sent on schedule)")


def ingestion_with_identity(store: str, args: argparse.Namespace, log) -> None:  # type: ignore[no-untyped-def]
    bodies = make_bodies(int((args.warmup + args.seconds) * args.max_rate / BATCH_SIZE), write_key=WRITE_KEY)
    rates = {}
    profiles_first = {"CDP_ATTRIBUTION_IDLE_MS": "0", "CDP_ATTRIBUTION_AT_INGEST": "true"}
    for label, env in (("as shipped", {}), ("profiles first", profiles_first)):
        with scratch_store(store, "identity-first" if env else "identity", args) as (home, url):
            os.environ.update(env)
            try:
                result, _, _, attribution = run_one(
                    Target("ours", home, url or f"sqlite:///{home / 'cdp.sqlite'}", 0), bodies, args, log)
            finally:
                for key in env:
                    os.environ.pop(key)
        assert attribution is not None
        rates[label] = (result.events_per_s, attribution.per_s(result))
        log(f"  {store} ingest, {label}: {summary(result)}")
        log(f"    {attribution.backlog:,} pending when the load stopped, drained in {attribution.drain_s:.1f} s: "
            f"{attribution.per_s(result):,.0f} events/s acknowledged and attributed")
    with prepared_stores(store, 0, args, log) as (_, ceiling):
        bare = run_one(ceiling, bodies, args, log)[0]
    log(f"  {store} ingest, a bare server (bench.ceiling, no identity resolution): {summary(bare)}")
    shipped = rates["as shipped"][0]
    with_identity = rates["profiles first"][1]
    log(f"  {store}: ingestion with identity resolution {with_identity:,.0f} events/s = "
        f"{with_identity / shipped:.2f} of our API's {shipped:,.0f} events/s as shipped (target: 0.60), "
        f"{with_identity / bare.events_per_s:.2f} of the bare server's {bare.events_per_s:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k profiles, 8 s runs")
    parser.add_argument("--profiles", type=int, help="people in the Profile API store [1M; 100k with --quick]")
    parser.add_argument("--seconds", type=float, help="measured seconds per run [20; 8 with --quick]")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=300.0, help="Profile API requests/s of the paced run")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--parts", default="api,ingest", help="comma-separated: api, ingest")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--quiet-wait", type=float, default=30.0)
    parser.add_argument("--max-rate", type=float, default=45_000,
                        help="events/s the pre-built bodies last for (the bare server is the fastest)")
    parser.add_argument("--sqlite-cache-mb", type=int, help="CDP_SQLITE_CACHE_MB for the ingest servers")
    args = parser.parse_args()
    args.profiles = args.profiles or (100_000 if args.quick else 1_000_000)
    args.seconds = args.seconds or (8.0 if args.quick else 20.0)
    report = Report("profiles")
    log = report.say
    log(report.machine())
    for store in [s.strip() for s in args.stores.split(",") if s.strip()]:
        if "api" in args.parts:
            profile_api(store, args, log)
        if "ingest" in args.parts:
            ingestion_with_identity(store, args, log)
    report.write()


if __name__ == "__main__":
    run(main)
