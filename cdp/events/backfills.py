"""History imported in bulk counts from when it happened.

Features count a fact only once it was received, so a snapshot of last month never sees data
that arrived later (no leakage). History imported today arrived today, though, and would be
invisible to every past snapshot: a prediction trained on an imported transaction log would
find no one to learn from. ``cdp import --backfill`` records each history import here, and
everything received by the end of the latest one counts from its event time, as
``CDP_BACKFILLED_UNTIL`` says by hand (the later of the two wins).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, insert, select

from cdp.store.tables import backfills


def record_backfill(conn: Connection, *, source_id: int, started_at: datetime, finished_at: datetime,
                    accepted: int) -> None:
    conn.execute(insert(backfills).values(source_id=source_id, started_at=started_at, finished_at=finished_at,
                                          accepted=accepted))


def backfill_watermark(conn: Connection, configured: datetime | None) -> datetime | None:
    """Receipts up to this time count from their event time: the later of the setting and the last history import."""
    recorded = conn.execute(select(func.max(backfills.c.finished_at))).scalar()
    return max((t for t in (configured, recorded) if t is not None), default=None)
