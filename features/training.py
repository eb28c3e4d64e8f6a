"""Training frames: snapshots at several cutoffs, each with its features and its label, stacked."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine

from features.definitions import CATEGORIES, Feature, resolve
from features.labels import ActiveWithin, Eligibility, Label
from features.read import Snapshot, features_at, labels_at, snapshot
from features.schemas import Purchases

CATEGORY_PREFIX = "category_share__"


def build_training_frame(
    engine: Engine,
    *,
    cutoffs: Sequence[datetime],
    horizon: timedelta,
    label: Label,
    feature_set: str | Iterable[str | Feature] = "default",
    features: Iterable[str | Feature] = (),
    eligibility: Sequence[Eligibility] = (ActiveWithin(days=90),),
    purchases: Purchases = Purchases(),
    backfilled_until: datetime | None = None,
) -> pd.DataFrame:
    """Features as of each cutoff and the label of the window after it, for eligible profiles.

    Parameters
    ----------
    engine : Engine
        The store.
    cutoffs : sequence of datetime
        Snapshot times (timezone-aware, distinct). Features at a cutoff see only facts with event
        time and receipt time at or before it.
    horizon : timedelta
        Length of the label window ``(cutoff, cutoff + horizon]``.
    label : Label
        :class:`~features.labels.ChurnLabel`, :class:`~features.labels.ValueLabel`,
        :class:`~features.labels.GoalLabel` or any object with the same methods.
    feature_set, features
        As in :func:`features.load`.
    eligibility : sequence of rules
        Every rule must hold as of the cutoff (default: active in the last 90 days); ``()``
        keeps every profile with an event before the cutoff.
    purchases : Purchases
        What the features call a purchase and its revenue.
    backfilled_until : datetime, optional
        Facts received by then (a history import) count from when they happened
        (:func:`features.sql.known_by`), as do those received by the end of the last
        ``cdp import --backfill`` (:mod:`cdp.events.backfills`); labels read event times anyway.

    Returns
    -------
    pandas.DataFrame
        One row per (eligible profile, cutoff), ordered by cutoff then ``profile_id``:
        ``profile_id`` (int64), ``cutoff`` (datetime64 UTC), the feature columns, ``label``
        (int64 0/1 for binary labels, float64 for values). A category column that only some
        cutoffs have is 0 where the profile bought other categories, NaN where it bought none.
    """
    if not cutoffs:
        raise ValueError("build_training_frame needs at least one cutoff")
    if any(c.tzinfo is None for c in cutoffs):
        raise ValueError("cutoffs must be timezone-aware")
    if len(set(cutoffs)) != len(cutoffs):
        raise ValueError("cutoffs must be distinct")
    if horizon <= timedelta(0):
        raise ValueError("horizon must be positive")
    chosen = resolve(feature_set, features)
    snapshots = []
    with snapshot(engine) as view:
        for cutoff in sorted(cutoffs):
            frame = _eligible_features(view, cutoff, chosen, eligibility, purchases, backfilled_until)
            aggregate = labels_at(view.conn, cutoff=cutoff, horizon=horizon, label=label, purchases=purchases)
            target = label.outcome(aggregate).reindex(frame.index).fillna(label.absent)
            frame.insert(0, "cutoff", pd.Timestamp(cutoff).tz_convert("UTC"))
            snapshots.append(frame.assign(label=target.astype("int64" if label.binary else "float64")))
    stacked = pd.concat(snapshots).reset_index()
    return _zero_unbought_categories(stacked, chosen)


def build_scoring_frame(
    engine: Engine,
    *,
    as_of: datetime,
    feature_set: str | Iterable[str | Feature] = "default",
    features: Iterable[str | Feature] = (),
    eligibility: Sequence[Eligibility] = (ActiveWithin(days=90),),
    purchases: Purchases = Purchases(),
    backfilled_until: datetime | None = None,
) -> pd.DataFrame:
    """The features of the profiles eligible as of ``as_of``, built as a training frame's are (no label).

    Returns
    -------
    pandas.DataFrame
        One row per eligible profile, by ``profile_id``: ``profile_id`` (int64), ``cutoff``
        (``as_of``), the feature columns.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    chosen = resolve(feature_set, features)
    with snapshot(engine) as view:
        frame = _eligible_features(view, as_of, chosen, eligibility, purchases, backfilled_until)
    frame.insert(0, "cutoff", pd.Timestamp(as_of).tz_convert("UTC"))
    return _zero_unbought_categories(frame.reset_index(), chosen)


def _eligible_features(
    view: Snapshot, cutoff: datetime, chosen: Sequence[Feature], eligibility: Sequence[Eligibility], purchases: Purchases,
    backfilled_until: datetime | None,
) -> pd.DataFrame:
    """Features as of ``cutoff`` of the profiles every rule admits (the rules' helper features dropped again)."""
    helpers = resolve([name for rule in eligibility for name in rule.requires if name not in {f.name for f in chosen}])
    frame = features_at(view, as_of=cutoff, features=[*chosen, *helpers], purchases=purchases,
                        backfilled_until=backfilled_until)
    for rule in eligibility:
        frame = frame[rule.mask(frame)]
    return frame.drop(columns=[f.name for f in helpers])


def _zero_unbought_categories(frame: pd.DataFrame, chosen: Sequence[Feature]) -> pd.DataFrame:
    if not any(f.family == CATEGORIES for f in chosen):
        return frame
    zero_unbought_categories(frame)
    # concat put categories first seen at a later cutoff last; keep the label the last column.
    return frame[[c for c in frame.columns if c != "label"] + ["label"]] if "label" in frame else frame


def zero_unbought_categories(frame: pd.DataFrame) -> list[str]:
    """Fill in 0 for the category shares that stacked frames left NaN for a buyer; return those columns.

    Frames concatenated from several queries (cutoffs, partitions) each have a column only for
    the categories bought in them: a profile that bought others has a share of 0, not a missing
    one. Profiles that bought nothing keep NaN. Changes ``frame`` in place.
    """
    columns = [c for c in frame.columns if c.startswith(CATEGORY_PREFIX)]
    bought = frame[columns].notna().any(axis=1)
    frame.loc[bought, columns] = frame.loc[bought, columns].fillna(0.0)
    return columns
