"""The ``refresh_audiences`` flow: every audience re-evaluated after the scores changed, changes delivered.

Live events move members in real time; what changes without an event (predicted traits written
back, time windows running out) moves them here.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger

from cdp.audiences.membership import recompute
from cdp.config import Settings, get_settings
from cdp.store.db import write_transaction
from features.read import opened
from flows.runtime import store_task


@store_task
def recompute_all(settings: Settings, as_of: datetime) -> dict[str, str]:
    with opened(settings) as engine:
        changes = write_transaction(engine, lambda conn: recompute(conn, as_of=as_of))
    get_run_logger().info("%d audiences recomputed", len(changes))
    return {change.key: f"{change.entered:,} entered, {change.exited:,} exited" for change in changes}


@flow(name="refresh_audiences")
def refresh_audiences(as_of: datetime | None = None) -> dict[str, str]:
    """Re-evaluate every audience as of a moment (default: now); entries and exits reach destinations."""
    return recompute_all(get_settings(), as_of or datetime.now(UTC))
