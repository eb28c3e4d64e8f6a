"""Load a simulation into a store in-process, as if it had arrived live (for notebooks and tests).

``cdp demo`` sends the simulated events over HTTP, all received today; here each batch is
received when its last message was sent, so the history is visible to past cutoffs the way a
live store's would be (point-in-time features need no backfill flag).
"""

from __future__ import annotations

from datetime import datetime
from itertools import islice

from sqlalchemy import Engine

from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.demo.send import read_jsonl
from cdp.demo.simulate import SimulationSummary
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope

# A small batch is received soon after its first message happened: with 20,000 messages of a small shop
# (weeks of events) a cutoff would not see the weeks before it, as their batch arrived after it.
BATCH = 1_000


def load_simulation(engine: Engine, settings: Settings, summary: SimulationSummary, *, source: str = "simulated-shop",
                    since: datetime, batch: int = BATCH) -> int:
    """Ingest ``summary``'s events (identity resolution included) under a new source created at ``since``;
    returns the number of messages read."""
    with engine.begin() as conn:
        source_id = create_source(conn, name=source, now=since)[0].id
    config = IngestConfig.from_settings(settings)
    stream = read_jsonl(summary.events_path)
    read = 0
    while chunk := list(islice(stream, batch)):
        received = max(datetime.fromisoformat(m["sentAt"]) for m in chunk)
        with engine.begin() as conn:
            ingest(conn, source_id=source_id, messages=chunk, envelope=Envelope(received_at=received),
                   config=config, live=False)
        read += len(chunk)
    return read
