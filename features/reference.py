"""The naive pandas reference: every built-in feature as a plain groupby over exported events.

Written independently of the SQL (its own point-in-time filter, windows, sessions and BTYD
arithmetic) so that agreeing with it means something; tests compare the two on random data,
and the benchmark times it against the SQL. Only the JSON extraction (an order's revenue, its
product lines) comes from the export. It keeps everything in memory: fine for tests and for a
benchmark, not for production.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from features.definitions import (
    CALL_TYPES,
    CATEGORIES,
    PANDAS,
    SESSION_TIMEOUT,
    TRAIT_CLASSES,
    TRAITS,
    WINDOWS,
    Feature,
    slug,
)
from features.read import Export, run_pandas_feature
from features.schemas import Purchases

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class _Seen:
    """The export as of one cutoff."""

    as_of: pd.Timestamp
    events: pd.DataFrame  # visible events
    purchases: pd.DataFrame  # visible purchases, sorted by profile, time, id
    profiles: pd.Index

    def days_before(self, moments: pd.Series) -> pd.Series:
        return (self.as_of - moments) / DAY

    def since(self, days: int) -> pd.Series:
        return self.events["timestamp"] > self.as_of - pd.Timedelta(days=days)


def reference_features(
    export: Export, *, as_of: datetime, features: Sequence[Feature], purchases: Purchases = Purchases()
) -> pd.DataFrame:
    """Same contract as :func:`features.read.features_at`, computed in pandas from ``export``."""
    cutoff = pd.Timestamp(as_of)
    shown = export.events[(export.events["timestamp"] <= cutoff) & (export.events["received_at"] <= cutoff)]
    bought = shown[(shown["type"] == "track") & shown["event"].isin(purchases.events)]
    seen = _Seen(
        as_of=cutoff,
        events=shown,
        purchases=bought.sort_values(["profile_id", "timestamp", "id"]),
        profiles=pd.Index(np.sort(shown["profile_id"].unique()), name="profile_id"),
    )
    columns: dict[str, pd.Series] = {}
    for feature in features:
        if feature.family == CATEGORIES:
            columns.update(_category_shares(export.lines, cutoff, purchases.categories).reindex(seen.profiles).items())
        elif feature.family == TRAITS:
            value = _trait(export.traits, cutoff, feature.key or "").reindex(seen.profiles)
            columns[feature.name] = value.where(value.notna(), None)
        elif feature.name in REFERENCE:
            columns[feature.name] = REFERENCE[feature.name](seen).reindex(seen.profiles)
        elif feature.pandas is not None:
            result = run_pandas_feature(feature, shown, as_of)
            columns[feature.name] = result.reindex(seen.profiles).where(seen.profiles.isin(result.index), feature.missing)
        else:
            raise NotImplementedError(f"{feature.name} is SQL only: give it a pandas function to have a reference")
        if feature.family not in (CATEGORIES, TRAITS, PANDAS) and feature.dtype == "int64":
            columns[feature.name] = columns[feature.name].fillna(0).astype("int64")
    return pd.DataFrame(columns, index=seen.profiles)


def _count(where: Callable[[_Seen], pd.Series] | None = None, days: int | None = None) -> Callable[[_Seen], pd.Series]:
    def compute(seen: _Seen) -> pd.Series:
        keep = pd.Series(True, index=seen.events.index)
        if where is not None:
            keep &= where(seen)
        if days is not None:
            keep &= seen.since(days)
        return seen.events[keep].groupby("profile_id").size()

    return compute


def _revenue(days: int | None = None, newest: int = 0) -> Callable[[_Seen], pd.Series]:
    def compute(seen: _Seen) -> pd.Series:
        rows = seen.purchases
        if days is not None:
            rows = rows[(rows["timestamp"] > seen.as_of - pd.Timedelta(days=days))
                        & (rows["timestamp"] <= seen.as_of - pd.Timedelta(days=newest))]
        return rows.groupby("profile_id")["revenue"].sum().reindex(seen.profiles, fill_value=0.0)

    return compute


def _gaps(seen: _Seen) -> pd.Series:
    rows = seen.purchases
    return rows.groupby("profile_id")["timestamp"].diff() / DAY


def _btyd(seen: _Seen) -> pd.DataFrame:
    """lifetimes' ``summary_data_from_transaction_data`` with daily periods, spelled out."""
    rows = seen.purchases.assign(day=seen.purchases["timestamp"].dt.floor("D"))
    per_day = rows.groupby(["profile_id", "day"])["revenue"].sum().reset_index()
    first = per_day.groupby("profile_id")["day"].transform("min")
    per_profile = per_day.groupby("profile_id")
    repeat = per_day[per_day["day"] > first].groupby("profile_id")["revenue"].mean()
    cutoff_day = seen.as_of.floor("D")
    return pd.DataFrame({
        "btyd_frequency": per_profile.size() - 1,
        "btyd_recency": (per_profile["day"].max() - per_profile["day"].min()) / DAY,
        "btyd_T": (cutoff_day - per_profile["day"].min()) / DAY,
        "btyd_monetary_value": repeat.reindex(per_profile.size().index, fill_value=0.0),
    })


def _sessions(days: int) -> Callable[[_Seen], pd.Series]:
    def compute(seen: _Seen) -> pd.Series:
        rows = seen.events[seen.since(days)].sort_values(["profile_id", "timestamp", "id"])
        gap = rows.groupby("profile_id")["timestamp"].diff()
        starts = gap.isna() | (gap > SESSION_TIMEOUT)
        return rows[starts].groupby("profile_id").size()

    return compute


def _category_shares(lines: pd.DataFrame, cutoff: pd.Timestamp, categories: Sequence[str] | None) -> pd.DataFrame:
    shown = lines[(lines["timestamp"] <= cutoff) & (lines["received_at"] <= cutoff)]
    total = shown.groupby("profile_id")["quantity"].sum()
    named = shown.dropna(subset=["category"])
    wide = pd.crosstab(
        named["profile_id"], "category_share__" + named["category"].map(slug), values=named["quantity"], aggfunc="sum"
    ).reindex(total.index).fillna(0.0)
    if categories is not None:
        wide = wide.reindex(columns=[f"category_share__{slug(c)}" for c in categories], fill_value=0.0)
    else:
        wide = wide.reindex(columns=sorted(wide.columns))
    wide.columns.name = None
    return wide.div(total.where(total > 0), axis=0)


def _trait(log: pd.DataFrame, cutoff: pd.Timestamp, name: str) -> pd.Series:
    rows = log[(log["name"] == name) & log["class"].isin(TRAIT_CLASSES)
               & (log["event_time"] <= cutoff) & (log["received_at"] <= cutoff)]
    latest = rows.sort_values(["event_time", "received_at", "id"]).groupby("profile_id").tail(1)
    return latest.set_index("profile_id")["value"].astype("object")


def _build() -> dict[str, Callable[[_Seen], pd.Series]]:
    is_purchase: Callable[[_Seen], pd.Series] = lambda s: s.events.index.isin(s.purchases.index)  # noqa: E731
    ref: dict[str, Callable[[_Seen], pd.Series]] = {
        "tenure_days": lambda s: s.days_before(s.events.groupby("profile_id")["timestamp"].min()),
        "days_since_last_event": lambda s: s.days_before(s.events.groupby("profile_id")["timestamp"].max()),
        "recency_days": lambda s: s.days_before(s.purchases.groupby("profile_id")["timestamp"].max()),
        "frequency": lambda s: s.purchases.groupby("profile_id").size(),
        "monetary": _revenue(),
        "avg_order_value": lambda s: s.purchases.groupby("profile_id")["revenue"].mean(),
        "revenue_trend_90d": lambda s: _revenue(90)(s) - _revenue(180, newest=90)(s),
        "inter_purchase_days_mean": lambda s: _gaps(s).groupby(s.purchases["profile_id"]).mean(),
        "inter_purchase_days_std": lambda s: _gaps(s).groupby(s.purchases["profile_id"]).std(ddof=1),
    }
    for days in WINDOWS:
        ref[f"events_{days}d"] = _count(days=days)
        for call in CALL_TYPES:
            ref[f"{call}_{days}d"] = _count(lambda s, call=call: s.events["type"] == call, days)
        ref[f"purchases_{days}d"] = _count(is_purchase, days)
        ref[f"sessions_{days}d"] = _sessions(days)
    for days in (30, 90):
        ref[f"revenue_{days}d"] = _revenue(days)
    for name in ("btyd_frequency", "btyd_recency", "btyd_T", "btyd_monetary_value"):
        ref[name] = lambda s, name=name: _btyd(s)[name]
    return ref


REFERENCE = _build()
