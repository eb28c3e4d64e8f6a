"""Declarative features: each a named column with a window, a registry, and named feature sets.

A feature is computed per profile **as of a cutoff** from the facts visible then. It is either
one SQL aggregate expression (pushed down to the store, grouped by profile) or one pandas
function over the profile's exported events. Users add their own with :func:`register_feature`
(or the :func:`sql_feature` / :func:`pandas_feature` decorators); built-in ones are listed in
:data:`BUILTIN_NAMES` and documented in the README of this package (``features/README.md``).

Families say which query computes a feature. Every feature of a family is one more column of
that family's single aggregation query:

=============  ===========================================================================
family         rows the SQL expression aggregates (grouped by ``profile_id``)
=============  ===========================================================================
``events``     visible events (:class:`features.sql.EventRows`); user SQL features go here
``purchases``  visible purchases with gaps and calendar days (:class:`features.sql.PurchaseRows`)
``sessions``   visible events of the last 90 days with their predecessor (:class:`features.sql.SessionRows`)
``categories`` product lines of visible purchases, pivoted to one share column per category
``traits``     the trait log, latest value as of the cutoff
``pandas``     a Python function over the exported visible events
=============  ===========================================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Float, func, literal
from sqlalchemy.sql.elements import ColumnElement

from features.sql import EventRows, PurchaseRows

EVENTS, PURCHASES, SESSIONS, CATEGORIES, TRAITS, PANDAS = "events", "purchases", "sessions", "categories", "traits", "pandas"
FAMILIES = (EVENTS, PURCHASES, SESSIONS, CATEGORIES, TRAITS, PANDAS)
WINDOWS = (7, 30, 90)
CALL_TYPES = ("track", "page", "screen", "identify")
SESSION_TIMEOUT = timedelta(minutes=30)  # Segment's, Amplitude's and GA's inactivity timeout
TRAIT_CLASSES = ("identify", "computed")  # never "predicted": a model must not learn from its own output

SqlBuilder = Callable[[Any], ColumnElement]
PandasFunction = Callable[[pd.DataFrame, datetime], pd.Series]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Feature:
    """One column of the feature frame.

    Parameters
    ----------
    name : str
        Column name (a Python identifier).
    description : str
        One sentence: what the number means, in which unit.
    family : str
        Which query computes it (see the module docstring).
    window_days : int, optional
        Only facts in ``(cutoff - window_days, cutoff]`` count; ``None``: all history.
    sql : callable, optional
        ``rows -> aggregate expression``; ``rows`` is the family's row namespace, already kept to
        the window for the ``events`` family.
    pandas : callable, optional
        ``(events, as_of) -> Series`` indexed by ``profile_id``; ``events`` holds the profile's
        visible events in the window (columns ``profile_id, type, event, timestamp,
        received_at`` and the requested ``properties``). A feature with both ``sql`` and
        ``pandas`` is computed with SQL; the pandas function is its reference.
    finish : callable, optional
        Applied to the SQL result column (for what SQLite can't compute, e.g. a square root).
    dtype : str
        ``float64``, ``int64``, ``object``.
    missing : float
        Value for a profile that has no row in the family's query (e.g. 0 for counts).
    events : tuple of str, optional
        ``pandas`` features: export only events (track, page or screen names) in this list.
    properties : tuple of str
        ``pandas`` features: ``properties`` to export, as columns of the same name.
    key : str, optional
        ``traits``: the trait name.
    """

    name: str
    description: str
    family: str = EVENTS
    window_days: int | None = None
    sql: SqlBuilder | None = None
    pandas: PandasFunction | None = None
    finish: Callable[[pd.Series], pd.Series] | None = None
    dtype: str = "float64"
    missing: float = math.nan
    events: tuple[str, ...] | None = None
    properties: tuple[str, ...] = ()
    key: str | None = None
    builtin: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"a feature name must be a Python identifier, got {self.name!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown feature family {self.family!r}; one of {', '.join(FAMILIES)}")
        if self.window_days is not None and self.window_days <= 0:
            raise ValueError(f"{self.name}: window_days must be positive")
        if self.family == PANDAS and self.pandas is None:
            raise ValueError(f"{self.name}: a pandas feature needs a function")
        if self.family in (EVENTS, PURCHASES, SESSIONS) and self.sql is None:
            raise ValueError(f"{self.name}: a {self.family} feature needs a SQL expression")
        if self.family == TRAITS and not self.key:
            raise ValueError(f"{self.name}: a trait feature needs the trait's name")
        if self.dtype not in ("float64", "int64", "object"):
            raise ValueError(f"{self.name}: dtype must be float64, int64 or object")


# -- registry -------------------------------------------------------------------------------

_FEATURES: dict[str, Feature] = {}
_SETS: dict[str, list[str]] = {}


def register_feature(
    name: str | Feature,
    *,
    description: str | None = None,
    sql: SqlBuilder | None = None,
    pandas: PandasFunction | None = None,
    window_days: int | None = None,
    events: Iterable[str] | None = None,
    properties: Iterable[str] = (),
    dtype: str = "float64",
    missing: float = math.nan,
    family: str = EVENTS,
    feature_sets: Iterable[str] = ("default",),
) -> Feature:
    """Register a feature by name: one SQL expression or one pandas function.

    Parameters
    ----------
    name : str or Feature
        The column name, or a ready :class:`Feature` (then the other options are ignored).
    description : str, optional
        Defaults to the first line of the function's docstring.
    sql : callable, optional
        ``e -> aggregate``; ``e`` is an :class:`features.sql.EventRows`, e.g.
        ``lambda e: e.count(e.named("Ticket Opened"))``.
    pandas : callable, optional
        ``(events, as_of) -> Series`` indexed by ``profile_id``.
    window_days, events, properties, dtype, missing
        See :class:`Feature`.
    family : str
        For a SQL feature: ``events`` (the default; one row per visible event) or ``purchases``
        (one row per visible purchase, with its revenue: :class:`features.sql.PurchaseRows`).
    feature_sets : iterable of str
        Feature sets the feature joins (``default`` unless told otherwise).

    Returns
    -------
    Feature
        The registered feature. Registering a user feature's name again replaces it (a
        notebook cell run twice); a built-in's name is refused.
    """
    if isinstance(name, Feature):
        feature = name
    else:
        function = sql or pandas
        if function is None:
            raise ValueError(f"{name}: give the feature a SQL expression (sql=) or a pandas function (pandas=)")
        if sql is not None and family not in (EVENTS, PURCHASES):
            raise ValueError(f"{name}: a SQL feature aggregates events or purchases, not {family!r}")
        feature = Feature(
            name=name,
            description=description or _first_line(function.__doc__) or name,
            family=family if sql is not None else PANDAS,
            window_days=window_days,
            sql=sql,
            pandas=pandas,
            dtype=dtype,
            missing=missing,
            events=tuple(events) if events is not None else None,
            properties=tuple(properties),
        )
    existing = _FEATURES.get(feature.name)
    if existing is not None and existing.builtin and not feature.builtin:
        raise ValueError(f"{feature.name!r} is a built-in feature; choose another name")
    _FEATURES[feature.name] = feature
    for set_name in feature_sets:
        members = _SETS.setdefault(set_name, [])
        if feature.name not in members:
            members.append(feature.name)
    return feature


def _first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def sql_feature(name: str, **options: Any) -> Callable[[SqlBuilder], SqlBuilder]:
    """Decorator form of :func:`register_feature` for a SQL expression builder."""

    def register(builder: SqlBuilder) -> SqlBuilder:
        register_feature(name, sql=builder, **options)
        return builder

    return register


def pandas_feature(name: str, **options: Any) -> Callable[[PandasFunction], PandasFunction]:
    """Decorator form of :func:`register_feature` for a pandas function."""

    def register(function: PandasFunction) -> PandasFunction:
        register_feature(name, pandas=function, **options)
        return function

    return register


def unregister_feature(name: str) -> None:
    """Forget a user feature (and drop it from every feature set)."""
    feature = _FEATURES.get(name)
    if feature is None:
        raise KeyError(name)
    if feature.builtin:
        raise ValueError(f"{name!r} is a built-in feature")
    del _FEATURES[name]
    for members in _SETS.values():
        if name in members:
            members.remove(name)


def register_feature_set(name: str, features: Iterable[str]) -> None:
    """Name a list of registered features (replacing a set of that name)."""
    names = list(features)
    unknown = [n for n in names if n not in _FEATURES]
    if unknown:
        raise KeyError(f"unknown features: {', '.join(unknown)}")
    _SETS[name] = names


def get_feature(name: str) -> Feature:
    try:
        return _FEATURES[name]
    except KeyError:
        raise KeyError(f"no feature named {name!r}; registered: {', '.join(sorted(_FEATURES))}") from None


def resolve(feature_set: str | Iterable[str | Feature] = "default", extra: Iterable[str | Feature] = ()) -> list[Feature]:
    """The features of a named set or of a list of names / features, plus ``extra``; no repeats."""
    if isinstance(feature_set, str):
        if feature_set not in _SETS:
            raise KeyError(f"no feature set named {feature_set!r}; registered: {', '.join(sorted(_SETS))}")
        items: list[str | Feature] = list(_SETS[feature_set])
    else:
        items = list(feature_set)
    chosen: dict[str, Feature] = {}
    for item in [*items, *extra]:
        feature = item if isinstance(item, Feature) else get_feature(item)
        chosen.setdefault(feature.name, feature)
    return list(chosen.values())


def feature_sets() -> dict[str, list[str]]:
    return {name: list(members) for name, members in _SETS.items()}


def trait_feature(trait: str) -> Feature:
    """A column ``trait__<name>``: the identify / computed trait's latest value as of the cutoff.

    Not registered: pass it (or its trait name in ``traits=``) to :func:`features.load`.
    """
    return Feature(
        name=f"trait__{slug(trait)}",
        description=f"latest value of the trait {trait!r} as of the cutoff",
        family=TRAITS,
        key=trait,
        dtype="object",
    )


def slug(text: str) -> str:
    """A column-name-safe form of a category or trait name ("Home & Kitchen" -> "home_kitchen").

    LightGBM refuses JSON special characters in feature names, so names are kept to [a-z0-9_].
    """
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "blank"


# -- built-in features ---------------------------------------------------------------------


def _std_from_variance(variance: pd.Series) -> pd.Series:
    return np.sqrt(variance.clip(lower=0.0))


def _register_builtins() -> None:
    _builtin_events()
    _builtin_purchases()
    _builtin_sessions()
    register_feature(
        Feature(
            name="category_share",
            description="share of purchased quantity per product category; expands to category_share__<category>",
            family=CATEGORIES,
            builtin=True,
        )
    )
    register_feature_set("rfm", ["recency_days", "frequency", "monetary", "tenure_days"])
    register_feature_set("btyd", ["btyd_frequency", "btyd_recency", "btyd_T", "btyd_monetary_value"])


def _builtin_events() -> None:
    def count(where: Callable[[EventRows], ColumnElement] | None = None) -> SqlBuilder:
        return lambda e: e.count(where(e) if where else None)

    def add(name: str, description: str, sql: SqlBuilder, window: int | None = None, **more: Any) -> None:
        register_feature(Feature(name, description, EVENTS, window, sql, builtin=True, **more))

    add("tenure_days", "days from the profile's first event to the cutoff", lambda e: e.days_before_cutoff(e.min(e.timestamp)))
    add("days_since_last_event", "days from the profile's last event to the cutoff",
        lambda e: e.days_before_cutoff(e.max(e.timestamp)))
    for days in WINDOWS:
        add(f"events_{days}d", f"events of any type in the last {days} days", count(), days, dtype="int64", missing=0)
        for call in CALL_TYPES:
            add(f"{call}_{days}d", f"{call} calls in the last {days} days",
                count(lambda e, call=call: e.type == call), days, dtype="int64", missing=0)
        add(f"purchases_{days}d", f"purchases in the last {days} days",
            count(lambda e: e.is_purchase), days, dtype="int64", missing=0)
    add("recency_days", "RFM recency: days from the last purchase to the cutoff (NaN: never bought)",
        lambda e: e.days_before_cutoff(e.max(e.timestamp, e.is_purchase)))
    add("frequency", "RFM frequency: purchases ever", count(lambda e: e.is_purchase), dtype="int64", missing=0)


def _builtin_purchases() -> None:
    def add(name: str, description: str, sql: Callable[[PurchaseRows], ColumnElement], **more: Any) -> None:
        register_feature(Feature(name, description, PURCHASES, sql=sql, builtin=True, **more))

    def distinct_days(p: PurchaseRows) -> ColumnElement[int]:
        return func.count(p.c.day.distinct())

    add("monetary", "RFM monetary: revenue of all purchases", lambda p: p.revenue(), missing=0.0)
    add("avg_order_value", "revenue per purchase (NaN: never bought)", lambda p: func.avg(p.c.revenue, type_=Float))
    for days in (30, 90):
        add(f"revenue_{days}d", f"revenue of the purchases of the last {days} days",
            lambda p, days=days: p.revenue(p.between_days_ago(0, days)), window_days=days, missing=0.0)
    add("revenue_trend_90d", "revenue of the last 90 days minus revenue of the 90 days before",
        lambda p: p.revenue(p.between_days_ago(0, 90)) - p.revenue(p.between_days_ago(90, 180)),
        window_days=180, missing=0.0)
    add("inter_purchase_days_mean", "mean days between consecutive purchases (NaN: fewer than 2)",
        lambda p: func.avg(p.c.gap_days, type_=Float))
    # Variance around the mean computed in a window beforehand: stable, and SQLite has no sqrt.
    add("inter_purchase_days_std", "sample standard deviation of the days between purchases (NaN: fewer than 3)",
        lambda p: func.sum((p.c.gap_days - p.c.gap_mean_days) * (p.c.gap_days - p.c.gap_mean_days))
        / func.nullif(func.count(p.c.gap_days) - 1, 0),
        finish=_std_from_variance)
    add("btyd_frequency", "BTYD frequency: distinct purchase days minus one (repeat purchase days)",
        lambda p: distinct_days(p) - 1)
    add("btyd_recency", "BTYD recency: days from the first to the last purchase day",
        lambda p: func.max(p.c.day) - func.min(p.c.day))
    add("btyd_T", "BTYD T: days from the first purchase day to the cutoff's day",
        lambda p: literal(p.cutoff_day) - func.min(p.c.day))
    add("btyd_monetary_value", "mean revenue of the repeat purchase days (0: no repeat day), as lifetimes / pymc-marketing",
        lambda p: func.coalesce(
            func.sum(p.c.revenue).filter(p.c.day > p.c.first_day) / func.nullif(distinct_days(p) - 1, 0), 0.0))


def _builtin_sessions() -> None:
    for days in WINDOWS:
        register_feature(Feature(
            f"sessions_{days}d",
            f"sessions (runs of events without a {int(SESSION_TIMEOUT.total_seconds() // 60)}-minute gap) "
            f"with an event in the last {days} days",
            SESSIONS, days, lambda s, days=days: func.count().filter(s.starts(days)),
            dtype="int64", missing=0, builtin=True,
        ))


_register_builtins()
BUILTIN_NAMES = tuple(_FEATURES)
