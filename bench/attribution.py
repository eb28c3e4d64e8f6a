"""Attribution's cost per event, in process: what a follower's transaction costs the store's writer.

    python -m bench.attribution                         # SQLite and PostgreSQL, 100,000 events each
    python -m bench.attribution --stores sqlite --events 200000

For each store, and each way a batch can be committed, on a fresh store: the bench-ingest load's
events (bench.load: 3,000 people) are stored as the Tracking API stores them (pending), then
attributed in batches of ``--batch``, oldest first (``attribute_pending``), one transaction per
batch; only the attribution is timed. The ways, measured in the same run:

- **as shipped**: a transaction of its own whose commit does not wait for the disk (``redoable``,
  see ``cdp.store.db.write_transaction``);
- **durable commit**: the same, its commit waiting for the disk;
- **in a savepoint**: a durable transaction with the batch in a savepoint, as grouped work runs
  (``cdp.store.group_commit``).

Then, with ``--parts`` including ``ingest``, the Tracking API's side: the store's writer time per
event of the same load by the way its requests are stored, four requests per transaction (as the
group committer joins them), the first tenth of the load untimed (its people are then returning):

- **stored pending**: every event inserted pending (SQLite's default), then attributed in batches;
- **profiles first**: returning people's track, page and screen calls attributed as they are
  stored (``CDP_ATTRIBUTION_AT_INGEST``), the follower after each transaction for the rest;
- **synchronous**: every event attributed in its request's transaction (``defer_attribution=False``).

No server, client or second process: the figures are the work itself, not its scheduling
(bench.profiles measures that).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
from sqlalchemy import Connection, Engine, select

from bench.load import BATCH_SIZE, make_bodies
from bench.profiles import scratch_store
from bench.report import Report, run
from cdp.config import Settings
from cdp.events.attribution import attribute_pending
from cdp.events.ingest import IngestConfig, ingest, prepare_batch, store_prepared
from cdp.events.schemas import Envelope
from cdp.setup import prepare_store
from cdp.store.db import write_transaction
from cdp.store.tables import sources


def store_pending(engine: Engine, config: IngestConfig, events: int) -> None:
    with engine.connect() as conn:
        source_id = conn.execute(select(sources.c.id)).scalar_one()
    for body in make_bodies(events // BATCH_SIZE, write_key="bench"):
        messages = orjson.loads(body.data)["batch"]
        write_transaction(engine, lambda conn: ingest(
            conn, source_id=source_id, messages=messages, envelope=Envelope(received_at=datetime.now(UTC)),
            config=config, defer_attribution=True))


def in_savepoint(engine: Engine, work: Callable[[Connection], int]) -> int:
    with engine.begin() as conn, conn.begin_nested():
        return work(conn)


WAYS: dict[str, Callable[[Engine, Callable[[Connection], int]], int]] = {
    "as shipped": lambda engine, work: write_transaction(engine, work, redoable=True),
    "durable commit": lambda engine, work: write_transaction(engine, work),
    "in a savepoint": in_savepoint,
}


def attribute_all(engine: Engine, config: IngestConfig, *, way: str, limit: int) -> int:
    """Attribute every pending event, ``limit`` per transaction committed the ``way`` given; how many."""
    def batch(conn: Connection) -> int:
        return attribute_pending(conn, config=config, now=datetime.now(UTC), limit=limit)

    done = 0
    while (taken := WAYS[way](engine, batch)) > 0:
        done += taken
    return done


def attribution_cost(home: Path, url: str | None, way: str, args: argparse.Namespace) -> tuple[int, float]:
    """Events attributed and seconds taken, on a fresh store at ``home`` / ``url``."""
    settings = Settings(home=home, database_url=url, write_keys="bench")
    engine = prepare_store(settings)
    try:
        config = IngestConfig.from_settings(settings)
        store_pending(engine, config, args.events)

        started = time.perf_counter()
        done = attribute_all(engine, config, way=way, limit=args.batch)
        return done, time.perf_counter() - started
    finally:
        engine.dispose()


INGEST_MODES = ("stored pending", "profiles first", "synchronous")
REQUESTS_PER_TRANSACTION = 4


def ingestion_cost(home: Path, url: str | None, mode: str, args: argparse.Namespace) -> tuple[float, float, int]:
    """Writer seconds per event of the requests' transactions and of the follower's, and the events
    the follower attributed, on a fresh store at ``home`` / ``url`` (see the module doc)."""
    settings = Settings(home=home, database_url=url, write_keys="bench", attribution_at_ingest=mode == "profiles first")
    engine = prepare_store(settings)
    try:
        config = IngestConfig.from_settings(settings)
        with engine.connect() as conn:
            source_id = conn.execute(select(sources.c.id)).scalar_one()
        envelope = Envelope(received_at=datetime.now(UTC))
        # Parsed before the clock: the API does it before it takes the writer.
        requests = [prepare_batch(orjson.loads(body.data)["batch"], envelope, config=config)
                    for body in make_bodies(args.events // BATCH_SIZE, write_key="bench")]

        def store(group: list) -> None:  # type: ignore[type-arg]
            def work(conn: Connection) -> None:
                for prepared in group:
                    store_prepared(conn, source_id=source_id, prepared=prepared, envelope=envelope, config=config,
                                   defer_attribution=mode != "synchronous")
            write_transaction(engine, work)

        def follow() -> int:
            return attribute_all(engine, config, way="as shipped", limit=args.batch)

        warm_up = len(requests) // 10
        for start in range(0, warm_up, REQUESTS_PER_TRANSACTION):
            store(requests[start:min(start + REQUESTS_PER_TRANSACTION, warm_up)])
        follow()
        storing = following = 0.0
        followed = 0
        for start in range(warm_up, len(requests), REQUESTS_PER_TRANSACTION):
            started = time.perf_counter()
            store(requests[start:start + REQUESTS_PER_TRANSACTION])
            storing += time.perf_counter() - started
            if mode == "profiles first":
                started = time.perf_counter()
                followed += follow()
                following += time.perf_counter() - started
        started = time.perf_counter()
        followed += follow()
        following += time.perf_counter() - started
        timed = (len(requests) - warm_up) * BATCH_SIZE
        return storing / timed, following / timed, followed
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="events per transaction (CDP_ATTRIBUTION_BATCH)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--parts", default="attribution", help="comma-separated: attribution, ingest")
    args = parser.parse_args()
    report = Report("attribution")
    report.say(report.machine())
    for store in [s.strip() for s in args.stores.split(",") if s.strip()]:
        if "ingest" in args.parts:
            ingestion_modes(store, args, report.say)
        if "attribution" not in args.parts:
            continue
        shipped = None
        for way in WAYS:
            with scratch_store(store, "attribution", args) as (home, url):
                done, seconds = attribution_cost(home, url, way, args)
            per_event = seconds / done * 1e6
            shipped = shipped or per_event
            report.say(f"  {store}, {way}: {done:,} events attributed in {seconds:.1f} s, {per_event:.1f} µs per event "
                       f"({per_event / shipped:.2f} of as shipped)")
    report.write()


def ingestion_modes(store: str, args: argparse.Namespace, say: Callable[[str], None]) -> None:
    insert_alone = None  # the stored-pending requests' transactions: what a burst's acknowledgements cost
    for mode in INGEST_MODES:
        with scratch_store(store, "ingest-modes", args) as (home, url):
            storing, following, followed = ingestion_cost(home, url, mode, args)
        insert_alone = insert_alone or storing
        say(f"  {store}, {mode}: the requests' transactions {storing * 1e6:.1f} µs per event, the follower "
            f"{following * 1e6:.1f} ({followed:,} events): {(storing + following) * 1e6:.1f} µs per event attributed, "
            f"{insert_alone / (storing + following):.2f} of the rate a writer storing pending acknowledges at")


if __name__ == "__main__":
    run(main)
