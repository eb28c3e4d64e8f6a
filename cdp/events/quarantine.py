"""The quarantine: messages that failed validation, kept with the reason, listable and replayable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from cdp.events.ingest import IngestConfig, store_events
from cdp.events.schemas import Envelope, Rejection
from cdp.events.validate import prepare_message
from cdp.governance.enforce import enforce
from cdp.governance.schemas import ActivePlan
from cdp.governance.service import load_active_plan
from cdp.store.tables import quarantine, sources


@dataclass(frozen=True)
class QuarantinedMessage:
    id: int
    source: str
    message_id: str | None
    code: str
    reason: str
    received_at: datetime
    payload: Any


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    still_invalid: int


def list_pending(conn: Connection, *, limit: int = 100, code: str | None = None) -> list[QuarantinedMessage]:
    """Quarantined messages not replayed yet, oldest first."""
    query = (
        select(quarantine, sources.c.name.label("source"))
        .join(sources, sources.c.id == quarantine.c.source_id)
        .where(quarantine.c.replayed_at.is_(None))
        .order_by(quarantine.c.id)
        .limit(limit)
    )
    if code:
        query = query.where(quarantine.c.code == code)
    return [
        QuarantinedMessage(r.id, r.source, r.message_id, r.code, r.reason, r.received_at, r.payload)
        for r in conn.execute(query)
    ]


def count_pending(conn: Connection) -> dict[str, int]:
    """Pending quarantined messages per reason code."""
    query = (
        select(quarantine.c.code, func.count())
        .where(quarantine.c.replayed_at.is_(None))
        .group_by(quarantine.c.code)
    )
    return {code: n for code, n in conn.execute(query)}


def replay(
    conn: Connection, *, now: datetime, config: IngestConfig, ids: Sequence[int] | None = None
) -> ReplayResult:
    """Validate pending messages again (rules or data may have been fixed); store those now valid.

    Each keeps its original receive time, so its event time is what it would have been. Tracking
    plans are enforced as they are now, so a plan change lets blocked messages through.
    Messages still invalid stay quarantined with the current reason.
    """
    query = select(quarantine).where(quarantine.c.replayed_at.is_(None)).order_by(quarantine.c.id)
    if ids is not None:
        query = query.where(quarantine.c.id.in_(list(ids)))
    replayed: list[int] = []
    valid: list[dict[str, Any]] = []
    still_invalid = 0
    plans: dict[int, ActivePlan | None] = {}
    for row in conn.execute(query).all():
        envelope = Envelope(received_at=row.received_at, sent_at=row.sent_at)
        prepared = prepare_message(row.payload, envelope, max_bytes=config.max_message_bytes)
        if row.source_id not in plans:
            plans[row.source_id] = load_active_plan(conn, source_id=row.source_id)
        plan = plans[row.source_id]
        if plan is not None and not isinstance(prepared, Rejection):
            prepared = enforce(plan, prepared)  # its violations were counted when it first came
        if isinstance(prepared, Rejection):
            still_invalid += 1
            conn.execute(
                update(quarantine).where(quarantine.c.id == row.id).values(code=prepared.code, reason=prepared.reason)
            )
            continue
        prepared["source_id"] = row.source_id
        valid.append(prepared)
        replayed.append(row.id)
    store_events(conn, valid, config=config, now=now)
    if replayed:
        conn.execute(update(quarantine).where(quarantine.c.id.in_(replayed)).values(replayed_at=now))
    return ReplayResult(replayed=len(replayed), still_invalid=still_invalid)
