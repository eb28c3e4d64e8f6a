"""Recommendations written back to profiles: the ``recommended_items`` trait and product-based
affinity audiences, refreshed after each training.

Both are traits of class ``predicted`` (model output, which ``features`` never learns from), so
the Profile API shows them and audiences use them like any trait:

- ``recommended_items``: the champion's top ``N`` item ids for the profile (``CDP_RECS_TRAIT_ITEMS``),
  seen items excluded;
- ``affinity_<kind>_<value>`` (e.g. ``affinity_brand_acme``): ``true`` for the top X % of profiles by
  affinity to an item, category or brand (the sum of the champion's scores over the matching
  items), ``false`` for a profile that was a member and no longer is, so an audience on
  "``affinity_brand_acme`` is true" loses it at the next refresh. Which affinities are refreshed
  is ``CDP_RECS_AFFINITY_AUDIENCES`` (``brand=acme:10,category=shoes:5``: kind=value:top %).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from cdp.config import Settings
from cdp.profiles.traits import trait_values, write_trait_values
from cdp.store.db import write_transaction
from models.recommend.base import Filters, batches
from models.recommend.filters import AlignedCatalog
from models.recommend.serve import RecommenderBundle
from models.tracking import load_recommender, recommender_champion_version

RECOMMENDED_ITEMS = "recommended_items"
TRAIT_CLASS = "predicted"
KINDS = ("item", "category", "brand")


@dataclass(frozen=True)
class Affinity:
    """One product-based audience: the top ``top_pct`` % of profiles by affinity to ``kind`` = ``value``."""

    kind: str
    value: str
    top_pct: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"affinity kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not 0 < self.top_pct <= 100:
            raise ValueError(f"top_pct must be in (0, 100], got {self.top_pct}")

    @property
    def trait(self) -> str:
        return f"affinity_{self.kind}_{re.sub(r'[^0-9a-z]+', '_', self.value.lower()).strip('_')}"

    @classmethod
    def parse_list(cls, text: str) -> list[Affinity]:
        """``brand=acme:10,category=shoes:5`` -> affinities (kind=value:top %)."""
        found = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = re.fullmatch(r"(\w+)=(.+):([0-9.]+)", part)
            if match is None:
                raise ValueError(f"an affinity audience is kind=value:top_pct (brand=acme:10), got {part!r}")
            found.append(cls(match[1], match[2], float(match[3])))
        return found


def recommended_items(bundle: RecommenderBundle, *, n: int) -> dict[int, list[str]]:
    """Profile id -> the champion's top ``n`` unseen item ids, for every profile the model knows."""
    model = bundle.model
    found: dict[int, list[str]] = {}
    for users in batches(np.arange(model.data_.n_users), 4096):
        stored = _precomputed_rows(bundle, users, n)
        top = np.empty((len(users), n), dtype=np.int64)
        top[stored >= 0] = bundle.top[stored[stored >= 0], :n]  # type: ignore[index]  # computed once at training
        if (stored < 0).any():
            top[stored < 0] = model.recommend_positions(users[stored < 0], n, Filters(exclude_seen=True))[0]
        for user, row in zip(users, top, strict=True):
            found[int(model.user_ids_[user])] = [str(item) for item in model.item_ids_[row[row >= 0]]]
    return found


def _precomputed_rows(bundle: RecommenderBundle, users: np.ndarray, n: int) -> np.ndarray:
    """Each user's row of ``bundle.top``, -1 when it has none or it is shorter than ``n``."""
    if bundle.top is None or n > bundle.top.shape[1]:
        return np.full(len(users), -1)
    return users if bundle.top_rows is None else bundle.top_rows[users]


def affinity_scores(bundle: RecommenderBundle, affinity: Affinity) -> pd.Series:
    """Profile id -> the sum of the champion's scores over the items matching the affinity, seen
    ones included (a buyer of the brand loves it); empty when no item matches."""
    model = bundle.model
    matching = _matching_items(bundle, affinity)
    users = np.arange(model.data_.n_users)
    if not matching.any():
        return pd.Series(dtype="float64", index=pd.Index([], name="profile_id"))
    scores = np.concatenate([np.asarray(model.user_scores(rows))[:, matching].sum(axis=1) for rows in batches(users)])
    return pd.Series(scores, index=pd.Index(model.user_ids_, name="profile_id"), dtype="float64")


def affinity_members(scores: pd.Series, top_pct: float) -> pd.Index:
    """The profiles in the top ``top_pct`` % of ``scores`` (at least one when any is scored)."""
    if scores.empty:
        return scores.index
    count = max(1, math.ceil(len(scores) * top_pct / 100.0))
    return scores.sort_values(ascending=False, kind="stable").index[:count]


def write_recommended_items(engine: Engine, bundle: RecommenderBundle, *, n: int, now: datetime) -> int:
    """Write ``recommended_items`` for every profile the model knows; returns the values that changed."""
    return _write(engine, RECOMMENDED_ITEMS, recommended_items(bundle, n=n), bundle.as_of, now)


def affinity_audience(engine: Engine, bundle: RecommenderBundle, affinity: Affinity, *, now: datetime,
                      write: bool = True) -> pd.Index:
    """The members of a product-based audience (profile ids); with ``write``, their trait
    ``affinity.trait`` becomes true and former members' false (a profile never in it gets no trait:
    millions of rows saying nothing)."""
    members = affinity_members(affinity_scores(bundle, affinity), affinity.top_pct)
    if write:
        with engine.connect() as conn:
            current = trait_values(conn, name=affinity.trait)
        values = {pid: False for pid, value in current.items() if value is True}
        values.update(dict.fromkeys((int(p) for p in members), True))
        _write(engine, affinity.trait, values, bundle.as_of, now)
    return members


def _write(engine: Engine, name: str, values: dict, as_of: datetime, now: datetime) -> int:
    return write_transaction(engine, lambda conn: write_trait_values(
        conn, name=name, values=values, trait_class=TRAIT_CLASS, event_time=as_of, received_at=now))


def _matching_items(bundle: RecommenderBundle, affinity: Affinity) -> np.ndarray:
    item_ids = bundle.model.item_ids_
    if affinity.kind == "item":
        return item_ids == affinity.value
    catalog = AlignedCatalog.from_frame(bundle.catalog, item_ids)
    return (catalog.category if affinity.kind == "category" else catalog.brand) == affinity.value


@dataclass(frozen=True)
class WriteBack:
    recommended_changed: int
    audiences: dict[str, int]  # trait -> members
    model_version: str | None = None

    def __str__(self) -> str:
        if self.model_version is None:
            return "no recommender champion: recommendation traits not written"
        return (f"champion v{self.model_version}: recommended_items changed on {self.recommended_changed:,} profiles"
                + "".join(f"; {trait}: {n:,} members" for trait, n in self.audiences.items()))


def write_back(engine: Engine, bundle: RecommenderBundle, settings: Settings, *, now: datetime) -> WriteBack:
    """After a training: ``recommended_items`` and every affinity audience of the settings, from ``bundle``."""
    changed = write_recommended_items(engine, bundle, n=settings.recs_trait_items, now=now)
    audiences = {affinity.trait: len(affinity_audience(engine, bundle, affinity, now=now))
                 for affinity in Affinity.parse_list(settings.recs_affinity_audiences)}
    return WriteBack(changed, audiences)


def write_back_champion(
    engine: Engine, settings: Settings, *, now: datetime, trained: RecommenderBundle | None = None,
    trained_version: str | None = None,
) -> WriteBack:
    """:func:`write_back` from the current champion (``trained`` if that is it: no reload)."""
    uri = settings.resolved_mlflow_tracking_uri
    champion = recommender_champion_version(uri)
    if champion is None:
        return WriteBack(0, {})
    bundle = trained if trained is not None and trained_version == champion else load_recommender(uri, champion)
    return replace(write_back(engine, bundle, settings, now=now), model_version=champion)
