"""An audience condition as one SQL boolean over a profile id, alike on SQLite and PostgreSQL.

Batch and real-time evaluation run the same SQL (the real-time one restricted to the profiles an
event touched), so they cannot disagree on what a condition means. Events count at ``as_of`` when
their event time is in ``(as_of - window, as_of]`` and they were received by ``as_of``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, type_coerce

from cdp.audiences.schemas import (
    AllOf,
    AnyOf,
    AudienceCondition,
    EventCondition,
    Not,
    PredictionCondition,
    TraitCondition,
)
from cdp.computed.json_read import JsonRead
from cdp.errors import InvalidInput
from cdp.store.tables import audience_members, events, profile_traits
from cdp.store.types import UTCDateTime


class ConditionSql:
    """Compiles conditions for one dialect, one evaluation time and the audience ids known now."""

    def __init__(self, dialect: str, *, as_of: datetime, audience_ids: Mapping[str, int]) -> None:
        self.dialect = dialect
        self.as_of = as_of
        self.audience_ids = audience_ids

    def __call__(self, condition: Any, profile: ColumnElement[int]) -> ColumnElement[bool]:
        if isinstance(condition, AllOf):
            return and_(*(self(child, profile) for child in condition.conditions))
        if isinstance(condition, AnyOf):
            return or_(*(self(child, profile) for child in condition.conditions))
        if isinstance(condition, Not):
            return not_(self(condition.condition, profile))
        if isinstance(condition, TraitCondition):
            return self._trait(condition, profile)
        if isinstance(condition, PredictionCondition):
            return self._prediction(condition, profile)
        if isinstance(condition, EventCondition):
            return self._event(condition, profile)
        if isinstance(condition, AudienceCondition):
            return self._audience(condition, profile)
        raise AssertionError(f"unknown condition {condition!r}")

    def _trait_rows(self, profile: ColumnElement[int], name: str, trait_class: str | None) -> list[ColumnElement[bool]]:
        where = [profile_traits.c.profile_id == profile, profile_traits.c.name == name]
        if trait_class is not None:
            where.append(profile_traits.c["class"] == trait_class)
        return where

    def _trait(self, condition: TraitCondition, profile: ColumnElement[int]) -> ColumnElement[bool]:
        read = JsonRead(self.dialect, profile_traits.c.value)
        where = [*self._trait_rows(profile, condition.trait, condition.trait_class), read.present(None)]
        if condition.op == "not_exists":
            return not_(exists(select(1).select_from(profile_traits).where(*where)))
        if condition.op != "exists":
            where.append(self._compare(read, condition))
        return exists(select(1).select_from(profile_traits).where(*where))

    def _compare(self, read: JsonRead, condition: TraitCondition) -> ColumnElement[bool]:
        op, value = condition.op, condition.value
        if op in ("eq", "neq", "lt", "gt", "lte", "gte", "contains"):
            return read.matches(None, op, value)
        if op == "in":
            return or_(*(read.matches(None, "eq", each) for each in value))  # type: ignore[union-attr]
        text = read.string(None)
        if op == "not_contains":
            return and_(text.is_not(None), not_(read.contains(None, value)))  # type: ignore[arg-type]
        if op == "starts_with":
            return func.substr(text, 1, len(value)) == value  # type: ignore[arg-type]
        if op == "ends_with":
            size = len(value)  # type: ignore[arg-type]
            tail = func.right(text, size) if self.dialect == "postgresql" else func.substr(text, -size)
            return tail == value if size else text.is_not(None)
        moment = self._timestamp(text)
        if op == "before":
            return moment < condition.moment
        if op == "after":
            return moment > condition.moment
        days = timedelta(days=value)  # type: ignore[arg-type]
        if op == "within_last":
            return moment.between(self.as_of - days, self.as_of)
        return moment.between(self.as_of, self.as_of + days)  # within_next

    def _timestamp(self, text: ColumnElement[Any]) -> ColumnElement[datetime]:
        """An ISO date in a string trait as a time (null when it is none), comparable with bound datetimes."""
        if self.dialect == "postgresql":
            return func.cdp_try_timestamp(text, type_=UTCDateTime)  # see migration 0010
        # The text SQLAlchemy binds a datetime as on SQLite: microseconds, UTC, no zone.
        return type_coerce(func.strftime("%Y-%m-%d %H:%M:%f", text) + "000", UTCDateTime)

    def _prediction(self, condition: PredictionCondition, profile: ColumnElement[int]) -> ColumnElement[bool]:
        read = JsonRead(self.dialect, profile_traits.c.value)
        percentile = read.number(None)
        bound = (percentile >= 1 - condition.top_percent / 100 if condition.top_percent is not None
                 else percentile <= condition.bottom_percent / 100)  # type: ignore[operator]
        where = [*self._trait_rows(profile, condition.trait, "predicted"), bound]
        return exists(select(1).select_from(profile_traits).where(*where))

    def _event(self, condition: EventCondition, profile: ColumnElement[int]) -> ColumnElement[bool]:
        root = "traits" if condition.call in ("identify", "group") else "properties"
        read = JsonRead(self.dialect, events.c.payload, (root,))
        where = [events.c.profile_id == profile, events.c.type == condition.call,
                 events.c.timestamp <= self.as_of, events.c.received_at <= self.as_of]
        if condition.event is not None:
            where.append(events.c.event == condition.event)
        if condition.within_days is not None:
            where.append(events.c.timestamp > self.as_of - timedelta(days=condition.within_days))
        where += [read.matches(f.property, f.op, f.value) for f in condition.filters]
        # "At least N" is "an N-th event exists": reading stops there, not at the end of a long history.
        nth = select(1).select_from(events).where(*where)
        if condition.at_least > 1:
            nth = nth.order_by(events.c.timestamp).limit(1).offset(condition.at_least - 1)
        found = exists(nth)
        return found if condition.performed else not_(found)

    def _audience(self, condition: AudienceCondition, profile: ColumnElement[int]) -> ColumnElement[bool]:
        audience_id = self.audience_ids.get(condition.audience)
        if audience_id is None:
            raise InvalidInput(f"no audience with key {condition.audience!r}")
        return exists(select(1).select_from(audience_members).where(
            audience_members.c.audience_id == audience_id, audience_members.c.profile_id == profile))
