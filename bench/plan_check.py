"""Cost of tracking-plan enforcement on ingestion: 100-message batches with and without a plan.

    python -m bench.plan_check [--database-url URL] [--batches 200]

Each batch is one ``ingest`` call and one commit, as a ``/v1/batch`` request is. One source per
case, the cases taking turns batch by batch so that the store's growth weighs on all alike. The
plan is the one ``infer_plan`` proposes for the simulated shop, so the messages follow it; the
"10% broken" cases break one message in ten, so that violations are written too.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.demo.simulate import SimulationConfig, iter_events
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.governance.check import check_message
from cdp.governance.infer import infer_plan
from cdp.governance.service import active_plan, assign_plan, create_plan
from cdp.setup import prepare_store

BATCH = 100
CASES = {  # name: (mode, one message in ten broken)
    "no plan": (None, False),
    "allow": ("allow", False),
    "flag": ("flag", False),
    "flag, 10% broken": ("flag", True),
    "block, 10% broken": ("block", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="bench-plans-")), database_url=args.database_url)
    engine = prepare_store(settings)
    config = IngestConfig.from_settings(settings)
    messages = list(islice(iter_events(SimulationConfig(profiles=3000, days=60)), BATCH * args.batches))
    now = datetime.now(UTC)
    with engine.begin() as conn:
        sources = {case: create_source(conn, name=case, now=now)[0].id for case in CASES}
        ingest(conn, source_id=sources["no plan"], messages=copy.deepcopy(messages[:2000]),
               envelope=Envelope(received_at=now), config=config)
        create_plan(conn, name="shop", rules=infer_plan(conn).rules, now=now)
        for case, (mode, _) in CASES.items():
            if mode:
                assign_plan(conn, source=case, plan="shop", mode=mode, now=now)

    # Per case: the ingest call (checks and inserts), and that plus the commit (the fsync).
    times: dict[str, list[tuple[float, float]]] = {case: [] for case in CASES}
    for start in range(0, len(messages), BATCH):
        for case, (_, broken) in CASES.items():
            batch = copy.deepcopy(messages[start:start + BATCH])
            for message in batch[::10] if broken else ():
                message["properties"] = {"unexpected": 1}
            began = time.perf_counter()
            with engine.begin() as conn:
                ingest(conn, source_id=sources[case], messages=batch, envelope=Envelope(received_at=datetime.now(UTC)),
                       config=config)
                ingested = time.perf_counter()
            times[case].append((ingested - began, time.perf_counter() - began))
    print(f"median ms per batch of {BATCH}: the ingest call | with the commit")
    for case, spent in times.items():
        call, total = (statistics.median(column) * 1000 for column in zip(*spent))
        print(f"{case:<18} {call:6.2f} | {total:6.2f}")

    with engine.connect() as conn:
        plan = active_plan(conn, source_id=sources["allow"])
    assert plan is not None
    sample = messages[:BATCH]
    began = time.perf_counter()
    for _ in range(200):
        for message in sample:
            check_message(message, plan.rules)
    per_batch = (time.perf_counter() - began) / 200 * 1000
    print(f"check_message alone: {per_batch:.3f} ms per batch of {BATCH} ({per_batch * 10:.1f} µs per message)")
    engine.dispose()


if __name__ == "__main__":
    main()
