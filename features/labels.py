"""Labels from the window after a cutoff, ``(cutoff, cutoff + horizon]``, and who is eligible.

A label is one SQL aggregate over a profile's events in its window (read by
:func:`features.read.labels_at`) turned into the target by :meth:`outcome`. An event exactly at
the cutoff belongs to the features, not the label; one exactly at ``cutoff + horizon`` counts.
Labels read events by event time whatever their receipt time: by training time the window is
in the past, and what happened in it is the truth to learn (the readiness report checks that
the store's data does reach the end of the last window).

Eligibility rules pick, per cutoff, the profiles a model is trained and scored on, from their
features as of that cutoff only (e.g. :class:`ActiveWithin`), so they can't peek either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pandas as pd
from sqlalchemy import and_
from sqlalchemy.sql.elements import ColumnElement

from features.schemas import Purchases
from features.sql import EventRows


class Label(Protocol):
    """What :func:`features.training.build_training_frame` needs of a label."""

    binary: bool
    absent: float  # the label of a profile without any event in the window

    def aggregate(self, rows: EventRows) -> ColumnElement: ...

    def outcome(self, aggregate: pd.Series) -> pd.Series: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ChurnLabel:
    """1 if the profile does nothing that counts as activity in the window, else 0.

    Parameters
    ----------
    events : tuple of str, optional
        Track / page / screen names that count as activity; ``None``: any event at all.
    """

    events: tuple[str, ...] | None = None
    binary: ClassVar[bool] = True
    absent: ClassVar[float] = 1

    def aggregate(self, rows: EventRows) -> ColumnElement:
        return rows.count(None if self.events is None else rows.event.in_(self.events))

    def outcome(self, aggregate: pd.Series) -> pd.Series:
        return (aggregate == 0).astype("int64")

    def describe(self) -> str:
        activity = "any event" if self.events is None else " / ".join(self.events)
        return f"churn (no {activity})"


@dataclass(frozen=True)
class ValueLabel:
    """Revenue of the purchases in the window (0 without any), net of negative revenues but never below 0.

    A transaction log may hold returns as orders of negative revenue (UCI's Online Retail does).
    They count against the window's purchases; a window of returns only is worth 0, not less: the
    value models predict a non-negative spend, as BTYD's Gamma-Gamma does.

    Parameters
    ----------
    events : tuple of str
        Purchase events.
    revenue : str
        Their value property; a purchase without it is worth the sum of ``products[].price x
        quantity`` (see :class:`features.schemas.Purchases`).
    """

    events: tuple[str, ...] = Purchases().events
    revenue: str = Purchases().revenue
    binary: ClassVar[bool] = False
    absent: ClassVar[float] = 0.0

    def aggregate(self, rows: EventRows) -> ColumnElement:
        own = EventRows(rows.dialect, rows.cutoff, Purchases(events=self.events, revenue=self.revenue), rows.window_days)
        return own.sum(own.revenue, own.is_purchase)

    def outcome(self, aggregate: pd.Series) -> pd.Series:
        return aggregate.astype("float64").clip(lower=0.0)

    def describe(self) -> str:
        return f"value ({self.revenue} of {' / '.join(self.events)})"


@dataclass(frozen=True)
class GoalLabel:
    """1 if the profile performs ``event`` at least ``min_count`` times in the window, else 0.

    Parameters
    ----------
    event : str
        Track (or page / screen) name.
    properties : mapping
        Property filters: ``{"plan": "pro"}`` keeps calls whose ``properties.plan`` is the JSON
        string "pro"; numbers and booleans compare as such. Dots reach nested properties.
    where : callable, optional
        Any further condition, ``rows -> SQL boolean`` (:class:`features.sql.EventRows`).
    min_count : int
        How many qualifying calls reach the goal.
    """

    event: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    where: Callable[[EventRows], ColumnElement[bool]] | None = None
    min_count: int = 1
    binary: ClassVar[bool] = True
    absent: ClassVar[float] = 0

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ValueError("GoalLabel.min_count must be at least 1")
        for name, value in self.properties.items():
            if not isinstance(value, str | bool | int | float):
                raise ValueError(f"GoalLabel property {name!r}: compare with a string, number or boolean")

    def aggregate(self, rows: EventRows) -> ColumnElement:
        conditions = [rows.event == self.event, *(_equals(rows, n, v) for n, v in self.properties.items())]
        if self.where is not None:
            conditions.append(self.where(rows))
        return rows.count(and_(*conditions))

    def outcome(self, aggregate: pd.Series) -> pd.Series:
        return (aggregate >= self.min_count).astype("int64")

    def describe(self) -> str:
        filters = "".join(f", {name}={value!r}" for name, value in self.properties.items())
        return f"goal ({self.event}{filters}, at least {self.min_count}x)"


def _equals(rows: EventRows, name: str, value: Any) -> ColumnElement[bool]:
    path = name.split(".")
    if isinstance(value, bool):  # before int: True is an int too
        return rows.boolean(*path) == value
    if isinstance(value, str):
        return rows.string(*path) == value
    return rows.number(*path) == float(value)


class Eligibility(Protocol):
    """A rule on a profile's features as of the cutoff; ``requires`` names the features it reads."""

    requires: tuple[str, ...]

    def mask(self, features: pd.DataFrame) -> pd.Series: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ActiveWithin:
    """Profiles with an event in ``(cutoff - days, cutoff]``."""

    days: int = 90
    requires: ClassVar[tuple[str, ...]] = ("days_since_last_event",)

    def mask(self, features: pd.DataFrame) -> pd.Series:
        return features["days_since_last_event"] < self.days

    def describe(self) -> str:
        return f"active in the last {self.days} days"


@dataclass(frozen=True)
class MinPurchases:
    """Profiles with at least ``count`` purchases before the cutoff (Segment's LTV asks for 2)."""

    count: int = 1
    requires: ClassVar[tuple[str, ...]] = ("frequency",)

    def mask(self, features: pd.DataFrame) -> pd.Series:
        return features["frequency"] >= self.count

    def describe(self) -> str:
        return f"at least {self.count} purchases"
