"""Answering one recommendation request from a trained champion, with the cold-start order.

:class:`RecommenderBundle` is what training registers (the chosen model, the popularity
fallback fitted on the same data, the catalog as of training); :class:`ServingModel` is what a
server holds in memory: a bundle, its registry version and the catalog aligned to its items.

Cold start, in order (``strategy`` of the answer):

1. ``personalized``: the profile was in the training data → the champion's own scores;
2. ``session``: the profile is new to the model (an anonymous visitor, or someone since training)
   but has recent interactions in the store → items similar to those, the latest counting most;
3. ``popular``: nothing known → the popularity fallback.

Similar items (``similar_items``) come from the champion's item-to-item scores.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from models.recommend.base import Filters, Recommender, top_n
from models.recommend.data import Interactions
from models.recommend.filters import AlignedCatalog, ItemRules, diversify
from models.recommend.popularity import PopularityRecommender

PERSONALIZED, SESSION, POPULAR, SIMILAR = "personalized", "session", "popular", "similar_items"
PRECOMPUTED = 50  # best unseen items kept per known profile at training; a request needing more scores live
# Lists precomputed at training for this many profiles, the most recently active: the ones who come back.
# Known profiles beyond it (long inactive) are scored on their first request and kept for the next
# LAZY_PROFILES such profiles per server process. Scoring every profile at training would cost hours at a million
# profiles (a re-ranker scores tens of users a second per core) for lists most of them never fetch.
PRECOMPUTED_PROFILES = 100_000
LAZY_PROFILES = 20_000
SESSION_DECAY = 0.5  # the k-th latest session item weighs SESSION_DECAY ** k
DIVERSITY_POOL = 5  # with a per-category cap, rank this many times ``n`` candidates first


@dataclass(frozen=True)
class RecommenderBundle:
    """A trained recommender as registered: everything a server needs, in one pickle.

    Attributes
    ----------
    name : str
        The chosen row of the selection table (``ease``, ``blend``, ...).
    model : Recommender
        Fitted on every interaction up to ``as_of``.
    popularity : PopularityRecommender
        Fitted on the same data: the fallback when nothing is known of a user.
    catalog : pandas.DataFrame
        Index ``item_id``; ``name``, ``category``, ``brand``, ``price``, ``available`` as of training.
    as_of : datetime
    top, top_scores : numpy.ndarray, optional
        ``(precomputed profiles, PRECOMPUTED)``: their best unseen item positions (-1 pads a short
        list) and scores, from :func:`precompute`: a request answered from them costs no model
        scoring (a re-ranker scores in milliseconds, the API's budget is a fraction of that).
    top_rows : numpy.ndarray, optional
        int32 per model user: its row of ``top``, -1 when not precomputed.
    """

    name: str
    model: Recommender
    popularity: PopularityRecommender
    catalog: pd.DataFrame
    as_of: datetime
    top: np.ndarray | None = None
    top_scores: np.ndarray | None = None
    top_rows: np.ndarray | None = None


def precompute(model: Recommender, n: int = PRECOMPUTED,
               profiles: int = PRECOMPUTED_PROFILES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n`` best unseen item positions and scores of the ``profiles`` most recently active
    users (``RecommenderBundle.top``, ``top_scores``, ``top_rows``)."""
    data = model.data_
    users = np.sort(most_recent_users(data, profiles))
    top, scores = model.recommend_positions(users, n, Filters(exclude_seen=True))
    rows = np.full(data.n_users, -1, dtype=np.int32)
    rows[users] = np.arange(len(users), dtype=np.int32)
    return top.astype(np.int32), scores.astype(np.float32), rows


def most_recent_users(data: Interactions, count: int) -> np.ndarray:
    """Rows of the ``count`` users whose last interaction is the latest (all of them when fewer)."""
    if count >= data.n_users:
        return np.arange(data.n_users)
    user = data.events["user"].to_numpy()
    last = np.flatnonzero(np.append(user[1:] != user[:-1], True))  # events are by user then time
    moment = data.events["timestamp"].to_numpy()[last]
    return user[last][np.argsort(moment, kind="stable")[-count:]]


@dataclass(frozen=True)
class Ask:
    """What one request wants: how many, which items may come, diversity."""

    n: int = 10
    rules: ItemRules = ItemRules()
    exclude_seen: bool = True
    max_per_category: int | None = None


@dataclass(frozen=True)
class Answer:
    items: list[dict[str, object]]  # {"item_id", "score"}, best first
    strategy: str


class ServingModel:
    """A champion in memory: answers :meth:`for_profile` and :meth:`similar` without the store."""

    def __init__(self, bundle: RecommenderBundle, version: str, catalog: pd.DataFrame | None = None) -> None:
        self.bundle = bundle
        self.version = version
        self.catalog_frame = bundle.catalog if catalog is None else catalog
        self.catalog = AlignedCatalog.from_frame(self.catalog_frame, bundle.model.item_ids_)
        # A request names a handful of items: a dict finds them faster than a pandas index lookup.
        self.column = {str(item): column for column, item in enumerate(bundle.model.item_ids_)}
        self._lazy: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # row -> scored list, oldest first
        self._lazy_lock = threading.Lock()

    def knows(self, profile_id: int) -> bool:
        """Whether the profile is answered from the model's own scores (it was in the training data):
        then only its interactions since ``bundle.as_of`` matter as ``recent`` (older ones are seen)."""
        return self.bundle.model.personalized and self._row(profile_id) >= 0

    def quick_answer(self, profile_id: int | None, recent: Sequence[str], ask: Ask) -> Answer | None:
        """:meth:`for_profile`'s answer when it scores no user: a list stored at training or scored and
        cached since (microseconds), or a session or popular answer (item scores of a few items: a
        fraction of a millisecond at thousands of items); else ``None``: scoring a user's row takes
        milliseconds, tens with a re-ranker."""
        if profile_id is None or not self.knows(profile_id):
            return self.for_profile(profile_id, recent, ask)
        lists = self._best_unseen(self._row(profile_id))
        return None if lists is None else self._precomputed(lists, self._positions(recent), self._allowed(ask), ask)

    def for_profile(self, profile_id: int | None, recent: Sequence[str], ask: Ask) -> Answer:
        """Recommendations for a profile (``None``: unknown) whose latest interactions are ``recent`` (newest first)."""
        model = self.bundle.model
        allowed = self._allowed(ask)
        recent_positions = self._positions(recent)
        row = self._row(profile_id) if profile_id is not None else -1
        if row >= 0 and model.personalized:
            lists = self._best_unseen(row, score=ask.exclude_seen)
            answer = None if lists is None else self._precomputed(lists, recent_positions, allowed, ask)
            if answer is not None:
                return answer
            # Interactions since training count as seen too.
            filters = Filters(exclude_seen=ask.exclude_seen, allowed=allowed,
                              exclude=tuple(recent) if ask.exclude_seen else ())
            top, scores = model.recommend_positions(np.array([row]), self._pool(ask), filters)
            return self._answer(top[0], scores[0], ask, PERSONALIZED)
        if len(recent_positions):
            weights = SESSION_DECAY ** np.arange(len(recent_positions), dtype=np.float32)
            scores = (weights[:, None] * model.item_scores(recent_positions)).sum(axis=0)
            seen = recent_positions if ask.exclude_seen else np.empty(0, dtype=np.int64)
            return self._ranked(scores, seen, allowed, ask, SESSION)
        seen = recent_positions if ask.exclude_seen else np.empty(0, dtype=np.int64)
        return self._ranked(self.bundle.popularity.popularity_, seen, allowed, ask, POPULAR)

    def _row(self, profile_id: int) -> int:
        """The profile's row in the model, -1 when it was not in the training data (one lookup, no arrays)."""
        ids = self.bundle.model.user_ids_
        at = int(ids.searchsorted(profile_id))
        return at if at < len(ids) and ids[at] == profile_id else -1

    def _positions(self, items: Sequence[str]) -> np.ndarray:
        return np.array([self.column[item] for item in items if item in self.column], dtype=np.int64)

    def _allowed(self, ask: Ask) -> np.ndarray | None:
        return self.catalog.mask(ask.rules) if ask.rules.restricts else None

    def similar(self, item_id: str, ask: Ask) -> Answer:
        """Items similar to ``item_id`` by the champion (never the item itself).

        Raises
        ------
        KeyError
            The item was not in the training data.
        """
        column = self.column[item_id]  # KeyError: unknown to the model
        allowed = self.catalog.mask(ask.rules) if ask.rules.restricts else None
        scores = self.bundle.model.item_scores(np.array([column]))[0]
        return self._ranked(scores, np.array([column]), allowed, ask, SIMILAR)

    def _precomputed(self, lists: tuple[np.ndarray, np.ndarray], recent: np.ndarray, allowed: np.ndarray | None,
                     ask: Ask) -> Answer | None:
        """The answer from the profile's list of best unseen items (``lists``: positions, scores), or
        ``None`` when it can't give it (seen items wanted, or the rules leave fewer items than the
        request needs)."""
        if not ask.exclude_seen:
            return None
        top, scores = lists
        keep = top >= 0
        if len(recent):
            keep &= ~(top[:, None] == recent[None, :]).any(axis=1)  # interactions since training count as seen too
        if allowed is not None:
            keep &= allowed[np.maximum(top, 0)]
        whole = top[-1] < 0  # the list already holds every item the model could rank for this profile
        if keep.sum() < self._pool(ask) and not whole:
            return None
        return self._answer(top[keep], scores[keep], ask, PERSONALIZED)

    def _best_unseen(self, row: int, *, score: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
        """The row's best unseen items: stored at training, or scored on a first request (when
        ``score``) and kept for the next ``LAZY_PROFILES`` profiles; ``None`` without stored lists."""
        bundle = self.bundle
        if bundle.top is None or bundle.top_scores is None:
            return None
        stored = row if bundle.top_rows is None else bundle.top_rows[row]  # no top_rows: every profile's
        if stored >= 0:
            return bundle.top[stored], bundle.top_scores[stored]
        found = self._lazy.get(row)
        if found is None and score:
            top, scores = bundle.model.recommend_positions(np.array([row]), bundle.top.shape[1], Filters(exclude_seen=True))
            found = top[0].astype(np.int32), scores[0].astype(np.float32)
            with self._lazy_lock:  # requests score in several threads
                if len(self._lazy) >= LAZY_PROFILES:
                    del self._lazy[next(iter(self._lazy))]
                self._lazy[row] = found
        return found

    def _pool(self, ask: Ask) -> int:
        return ask.n if ask.max_per_category is None else ask.n * DIVERSITY_POOL

    def _ranked(self, scores: np.ndarray, excluded: np.ndarray, allowed: np.ndarray | None, ask: Ask,
                strategy: str) -> Answer:
        row = np.array(scores, dtype=np.float32, copy=True)[None, :]
        row[0, excluded] = -np.inf
        if allowed is not None:
            row[0, ~allowed] = -np.inf
        top, best = top_n(row, self._pool(ask))
        return self._answer(top[0], best[0], ask, strategy)

    def _answer(self, top: np.ndarray, scores: np.ndarray, ask: Ask, strategy: str) -> Answer:
        if ask.max_per_category is not None:
            keep = diversify(top, self.catalog.category, n=ask.n, max_per_category=ask.max_per_category)
        else:
            keep = np.flatnonzero(top >= 0)[: ask.n]
        ids = self.bundle.model.item_ids_
        return Answer([{"item_id": str(ids[top[i]]), "score": float(scores[i])} for i in keep], strategy)
