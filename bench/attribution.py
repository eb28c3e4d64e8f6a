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
from cdp.events.ingest import IngestConfig, ingest
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


def attribution_cost(home: Path, url: str | None, way: str, args: argparse.Namespace) -> tuple[int, float]:
    """Events attributed and seconds taken, on a fresh store at ``home`` / ``url``."""
    settings = Settings(home=home, database_url=url, write_keys="bench")
    engine = prepare_store(settings)
    try:
        config = IngestConfig.from_settings(settings)
        store_pending(engine, config, args.events)

        def batch(conn: Connection) -> int:
            return attribute_pending(conn, config=config, now=datetime.now(UTC), limit=args.batch)

        done, started = 0, time.perf_counter()
        while (taken := WAYS[way](engine, batch)) > 0:
            done += taken
        return done, time.perf_counter() - started
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="events per transaction (CDP_ATTRIBUTION_BATCH)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    report = Report("attribution")
    report.say(report.machine())
    for store in [s.strip() for s in args.stores.split(",") if s.strip()]:
        shipped = None
        for way in WAYS:
            with scratch_store(store, "attribution", args) as (home, url):
                done, seconds = attribution_cost(home, url, way, args)
            per_event = seconds / done * 1e6
            shipped = shipped or per_event
            report.say(f"  {store}, {way}: {done:,} events attributed in {seconds:.1f} s, {per_event:.1f} µs per event "
                       f"({per_event / shipped:.2f} of as shipped)")
    report.write()


if __name__ == "__main__":
    run(main)
