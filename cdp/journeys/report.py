"""A journey's lift: conversion of the profiles it treated against its holdout.

A conversion is the journey's goal event performed within the goal's window after entering (event
time). Entries whose window is still open count with what happened so far. The interval of the
absolute lift is Wald's (95 %), of the relative lift Katz's log interval of the ratio of the rates.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from cdp.journeys.service import StoredJourney
from cdp.store.tables import events, journey_instances, journey_sends

Z95 = 1.959964


@dataclass(frozen=True)
class Arm:
    entries: int
    conversions: int
    sends: int  # treated: sent; holdout: sends it would have had

    @property
    def rate(self) -> float | None:
        return self.conversions / self.entries if self.entries else None


@dataclass(frozen=True)
class LiftReport:
    journey: str
    version: int
    goal: str | None
    treated: Arm
    holdout: Arm
    absolute_lift: float | None
    absolute_ci: tuple[float, float] | None
    relative_lift: float | None
    relative_ci: tuple[float, float] | None
    sends: dict[str, int]  # by status: sent, holdout, suppressed, deferred
    reasons: dict[str, int]  # suppressed and deferred, by reason kind (frequency_cap, priority, quiet_hours)

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        for arm in ("treated", "holdout"):
            found[arm]["conversion_rate"] = getattr(self, arm).rate
        return found


def lift_report(conn: Connection, *, journey: StoredJourney) -> LiftReport:
    definition = journey.definition
    entries = conn.execute(select(journey_instances.c.profile_id, journey_instances.c.entered_at,
                                  journey_instances.c.holdout)
                           .where(journey_instances.c.journey_id == journey.id)).all()
    converted: Counter[bool] = Counter()
    if definition.goal is not None and entries:
        goals = _goal_times(conn, journey)
        window = definition.goal.within.delta
        for profile_id, entered_at, holdout in entries:
            times = goals.get(profile_id, [])
            after = bisect_right(times, entered_at)
            converted[holdout] += after < len(times) and times[after] <= entered_at + window
    logged = conn.execute(select(journey_sends.c.status, journey_sends.c.reason, func.count())
                          .where(journey_sends.c.journey_id == journey.id)
                          .group_by(journey_sends.c.status, journey_sends.c.reason)).all()
    sends: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for status, reason, count in logged:
        sends[status] += count
        if status in ("suppressed", "deferred"):
            reasons[(reason or "").split(":")[0]] += count
    counts = Counter(holdout for _, _, holdout in entries)
    treated = Arm(counts[False], converted[False], sends["sent"])
    holdout = Arm(counts[True], converted[True], sends["holdout"])
    absolute, absolute_ci, relative, relative_ci = _lift(treated, holdout)
    return LiftReport(journey.key, journey.version, definition.goal.event if definition.goal else None, treated,
                      holdout, absolute, absolute_ci, relative, relative_ci, dict(sends), dict(reasons))


def _goal_times(conn: Connection, journey: StoredJourney) -> dict[int, list[Any]]:
    """Event times of the goal event, sorted, per profile that entered the journey."""
    assert journey.definition.goal is not None
    entered = select(journey_instances.c.profile_id).where(journey_instances.c.journey_id == journey.id)
    first = select(func.min(journey_instances.c.entered_at)).where(journey_instances.c.journey_id == journey.id)
    query = (select(events.c.profile_id, events.c.timestamp)
             .where(events.c.type == "track", events.c.event == journey.definition.goal.event,
                    events.c.profile_id.in_(entered), events.c.timestamp > first.scalar_subquery())
             .order_by(events.c.timestamp))
    found: dict[int, list[Any]] = defaultdict(list)
    for profile_id, timestamp in conn.execute(query):
        found[profile_id].append(timestamp)
    return found


def _lift(treated: Arm, holdout: Arm) -> tuple[float | None, tuple[float, float] | None, float | None,
                                                tuple[float, float] | None]:
    p1, p0 = treated.rate, holdout.rate
    if p1 is None or p0 is None:
        return None, None, None, None
    absolute = p1 - p0
    se = math.sqrt(p1 * (1 - p1) / treated.entries + p0 * (1 - p0) / holdout.entries)
    absolute_ci = (absolute - Z95 * se, absolute + Z95 * se)
    if p0 == 0:
        return absolute, absolute_ci, None, None
    relative = p1 / p0 - 1
    if p1 == 0:
        return absolute, absolute_ci, relative, None
    log_se = math.sqrt((1 - p1) / treated.conversions + (1 - p0) / holdout.conversions)
    relative_ci = (math.exp(math.log(p1 / p0) - Z95 * log_se) - 1, math.exp(math.log(p1 / p0) + Z95 * log_se) - 1)
    return absolute, absolute_ci, relative, relative_ci
