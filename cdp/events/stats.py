"""What the store holds: counts for the CLI and the demo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from cdp.events.quarantine import count_pending
from cdp.store.tables import events


@dataclass(frozen=True)
class StoreSummary:
    events: int
    by_type: dict[str, int]
    top_events: list[tuple[str, int]]
    users: int
    anonymous_ids: int
    first_event: datetime | None
    last_event: datetime | None
    quarantined: dict[str, int]


def summarize(conn: Connection, *, top: int = 8) -> StoreSummary:
    by_type = dict(conn.execute(select(events.c.type, func.count()).group_by(events.c.type)).all())
    top_events = [
        (name, n)
        for name, n in conn.execute(
            select(events.c.event, func.count().label("n"))
            .where(events.c.type == "track")
            .group_by(events.c.event)
            .order_by(func.count().desc())
            .limit(top)
        )
    ]
    users, anonymous_ids, first, last = conn.execute(
        select(
            func.count(events.c.user_id.distinct()),
            func.count(events.c.anonymous_id.distinct()),
            func.min(events.c.timestamp),
            func.max(events.c.timestamp),
        )
    ).one()
    return StoreSummary(
        events=sum(by_type.values()),
        by_type=by_type,
        top_events=top_events,
        users=users,
        anonymous_ids=anonymous_ids,
        first_event=first,
        last_event=last,
        quarantined=count_pending(conn),
    )



def recent_rate(conn: Connection, *, now: datetime, minutes: int = 30, newest: int = 5000) -> tuple[list[int], bool]:
    """Events received per minute over the last ``minutes`` (oldest first), from the ``newest`` stored
    events by id, so the cost stays bounded on any store; ``True`` when those did not reach back that far
    (the counts are then lower bounds)."""
    times = conn.execute(select(events.c.received_at).order_by(events.c.id.desc()).limit(newest)).scalars().all()
    counts = [0] * minutes
    for received in times:
        ago = int((now - received).total_seconds() // 60)
        if 0 <= ago < minutes:
            counts[minutes - 1 - ago] += 1
    return counts, len(times) == newest and (now - times[-1]).total_seconds() < minutes * 60
