"""The global contact policy at send time: quiet hours defer a send, frequency caps and priority suppress one.

Priority decides between sends due at the same moment for one profile and destination (two journeys
triggered by one event, or timers that fire together): the higher-priority journey takes the slots
the caps leave. Sends at different moments are first come, first served under the caps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from cdp.journeys.schemas import ContactPolicy, QuietHours, zone
from cdp.store.tables import journey_sends, profile_traits

SENT = "sent"


@dataclass(frozen=True)
class Intent:
    """A send a journey step wants to make now."""

    journey_key: str
    profile_id: int
    destination_id: int
    payload: Any  # what the caller needs to make the send


def quiet_until(quiet: QuietHours, *, timezone: Any, now: datetime) -> datetime | None:
    """When the quiet hours ``now`` falls in end (UTC), or None when a send may go now.

    ``timezone`` is the profile's time zone trait; the policy's zone when it is none or not a zone.
    """
    tz = zone(timezone) or zone(quiet.timezone)
    local = now.astimezone(tz)
    at, start, end = local.time(), quiet.start, quiet.end
    if start < end:
        if not start <= at < end:
            return None
        ends_on = local.date()
    else:  # the quiet hours pass midnight
        if end <= at < start:
            return None
        ends_on = local.date() + timedelta(days=1) if at >= start else local.date()
    return datetime.combine(ends_on, end, tzinfo=tz).astimezone(UTC)


def profile_timezone(conn: Connection, quiet: QuietHours, profile_id: int) -> Any:
    if quiet.timezone_trait is None:
        return None
    return conn.execute(select(profile_traits.c.value).where(
        profile_traits.c.profile_id == profile_id, profile_traits.c.name == quiet.timezone_trait)).scalar()


def arbitrate(conn: Connection, policy: ContactPolicy, intents: Sequence[Intent], *, now: datetime
              ) -> list[tuple[Intent, str | None]]:
    """Each intent with None (send it) or why it is suppressed, by the caps and the journeys' priority."""
    groups: dict[tuple[int, int], list[Intent]] = defaultdict(list)
    for intent in intents:
        groups[(intent.profile_id, intent.destination_id)].append(intent)
    if policy.frequency_caps and conn.dialect.name == "postgresql":
        _lock_counts(conn, sorted(groups))
    decided: list[tuple[Intent, str | None]] = []
    for (profile_id, destination_id), group in groups.items():
        ordered = sorted(group, key=lambda i: policy.rank(i.journey_key))
        left = _sends_left(conn, policy, profile_id=profile_id, destination_id=destination_id, now=now)
        for position, intent in enumerate(ordered):
            if left is None or position < left:
                decided.append((intent, None))
                continue
            winners = {i.journey_key for i in ordered[:left]} - {intent.journey_key}
            reason = (f"priority: journey {sorted(winners)[0]!r} took the capped slot" if winners
                      else f"frequency_cap: destination {destination_id} has no send left in its window")
            decided.append((intent, reason))
    return decided


# Two PostgreSQL workers capping sends to one profile would each count the other's sends as not
# yet made and both send: they take turns per (profile, destination), in one order (no deadlock).
# SQLite's single writer already serialises them.
_PG_LOCK_COUNTS = """
    SELECT pg_advisory_xact_lock(hashtextextended(concat_ws(':', 'journey_sends', p, d), 0))
    FROM unnest(%s::bigint[], %s::bigint[]) AS k(p, d)"""


def _lock_counts(conn: Connection, keys: list[tuple[int, int]]) -> None:
    conn.exec_driver_sql(_PG_LOCK_COUNTS, ([p for p, _ in keys], [d for _, d in keys]))


def _sends_left(conn: Connection, policy: ContactPolicy, *, profile_id: int, destination_id: int, now: datetime
                ) -> int | None:
    """Sends still allowed now under every cap on this destination; None when none applies."""
    left = None
    for cap in policy.frequency_caps:
        if cap.destination not in (None, destination_id):
            continue
        sent = conn.execute(select(func.count()).select_from(journey_sends).where(
            journey_sends.c.profile_id == profile_id, journey_sends.c.destination_id == destination_id,
            journey_sends.c.status == SENT, journey_sends.c.at > now - cap.window.delta)).scalar_one()
        left = max(cap.max - sent, 0) if left is None else min(left, max(cap.max - sent, 0))
    return left
