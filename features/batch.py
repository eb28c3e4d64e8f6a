"""Features of every profile in partitions, a snapshot file of them, and a training set's readiness.

What the scheduled flows run (``flows/``), as plain functions: a flow maps
:func:`features.load` over :meth:`Partition.split` (in parallel, on Dask if configured), joins the
parts with :func:`combine`, writes them with :func:`write_snapshot`, and reports
:func:`training_readiness`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from cdp.config import Settings
from features.definitions import CATEGORIES, Feature
from features.labels import ChurnLabel, Label
from features.read import opened
from features.readiness import ReadinessReport, readiness_report
from features.schemas import Purchases
from features.training import build_training_frame, zero_unbought_categories


def combine(
    parts: Sequence[pd.DataFrame], *, features: Sequence[Feature], purchases: Purchases = Purchases()
) -> pd.DataFrame:
    """The frames of disjoint partitions as one, equal to the frame of a single query over all profiles.

    Category shares are the one difference between the parts: each has columns only for the
    categories its own profiles bought. Their buyers get 0 in the others, and the columns go back
    to where (and in the order) a single query puts them.
    """
    frame = pd.concat(parts).sort_index()
    if not any(f.family == CATEGORIES for f in features):
        return frame
    shares = zero_unbought_categories(frame)
    if purchases.categories is None:
        shares = sorted(shares)
    return frame[[name for f in features for name in (shares if f.family == CATEGORIES else [f.name])]]


def snapshot_path(home: Path, as_of: datetime) -> Path:
    """Where the snapshot of ``as_of`` lives: ``<home>/features/2026-06-01T000000Z.parquet``."""
    return home / "features" / f"{as_of.astimezone(UTC):%Y-%m-%dT%H%M%SZ}.parquet"


def write_snapshot(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as Parquet at ``path``; readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    frame.to_parquet(partial)
    os.replace(partial, path)
    return path


def training_readiness(
    store: Engine | Settings,
    *,
    as_of: datetime,
    horizon: timedelta = timedelta(days=30),
    snapshots: int = 3,
    label: Label = ChurnLabel(),
    backfilled_until: datetime | None = None,
) -> tuple[pd.DataFrame, ReadinessReport]:
    """A training frame at ``snapshots`` cutoffs a horizon apart, and its readiness report.

    The last cutoff is a horizon before ``as_of``, so that its label window is over by then.
    Raises :class:`~features.readiness.NotReady` when no profile is eligible at any cutoff.
    """
    cutoffs = [as_of - horizon * (n + 1) for n in range(snapshots)]
    with opened(store) as engine:
        frame = build_training_frame(engine, cutoffs=cutoffs, horizon=horizon, label=label,
                                     backfilled_until=backfilled_until)
        report = readiness_report(engine, frame, horizon=horizon, label=label, backfilled_until=backfilled_until)
    return frame, report
