"""Point-in-time features and labels computed from the store.

In a notebook::

    import features
    from datetime import datetime, UTC
    frame = features.load(settings, as_of=datetime(2026, 6, 1, tzinfo=UTC))   # or an Engine

    @features.sql_feature("tickets_30d", window_days=30)
    def tickets(e):
        "support tickets opened in the last 30 days"
        return e.count(e.named("Ticket Opened"))
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine

from cdp.config import Settings
from features.definitions import (
    BUILTIN_NAMES,
    Feature,
    feature_sets,
    get_feature,
    pandas_feature,
    register_feature,
    register_feature_set,
    resolve,
    sql_feature,
    trait_feature,
    unregister_feature,
)
from features.labels import ActiveWithin, ChurnLabel, GoalLabel, MinPurchases, ValueLabel
from features.read import opened, read_features
from features.readiness import NotReady, ReadinessReport, Requirements, readiness_report
from features.schemas import Partition, Purchases
from features.training import build_scoring_frame, build_training_frame

__all__ = [
    "BUILTIN_NAMES", "ActiveWithin", "ChurnLabel", "Feature", "GoalLabel", "MinPurchases", "NotReady", "Partition",
    "Purchases", "ReadinessReport", "Requirements", "ValueLabel", "build_scoring_frame", "build_training_frame",
    "feature_sets", "get_feature", "load",
    "pandas_feature", "readiness_report", "register_feature", "register_feature_set", "sql_feature",
    "trait_feature", "unregister_feature",
]


def load(
    store: Engine | Settings,
    *,
    as_of: datetime,
    feature_set: str | Iterable[str | Feature] = "default",
    features: Iterable[str | Feature] = (),
    traits: Iterable[str] = (),
    purchases: Purchases = Purchases(),
    partition: Partition = Partition(),
    backfilled_until: datetime | None = None,
) -> pd.DataFrame:
    """The feature frame of every profile as of ``as_of``, for a notebook or a model.

    Parameters
    ----------
    store : Engine or Settings
        The store's engine, or settings to open it with (closed again afterwards).
    as_of : datetime
        The cutoff (timezone-aware): only facts that happened *and* were received by then count.
    feature_set : str or iterable
        A registered set's name (``default``, ``rfm``, ``btyd``) or feature names / features.
    features : iterable
        More features to add to the set.
    traits : iterable of str
        Identify / computed traits to add as ``trait__<name>`` columns.
    purchases : Purchases
        Which events are purchases and where their revenue is.
    partition : Partition
        Only the profiles of this slice (the store filters them); the default is every profile.
    backfilled_until : datetime, optional
        Facts received by then (a history import) count from when they happened; so do those
        received by the end of the last ``cdp import --backfill`` (:mod:`cdp.events.backfills`).

    Returns
    -------
    pandas.DataFrame
        Index ``profile_id`` (every profile with an event visible as of ``as_of``), one column
        per feature; see :func:`features.read.features_at`.
    """
    chosen = resolve(feature_set, [*features, *(trait_feature(name) for name in traits)])
    with opened(store) as engine:
        return read_features(engine, as_of=as_of, features=chosen, purchases=purchases, partition=partition,
                             backfilled_until=backfilled_until)
