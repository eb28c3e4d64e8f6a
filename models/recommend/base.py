"""The one contract every recommender keeps, and the ranking they share.

A model learns scores; :class:`Recommender` turns them into recommendations: the filters (seen
items, an allowed-item mask, excluded ids), the top ``n`` and the ids. Subclasses implement
``_learn``, ``user_scores`` and ``item_scores`` only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
import pandas as pd
from scipy import sparse

from models.recommend.data import Interactions

BATCH_USERS = 512  # dense score rows computed at once: batch x items floats


@dataclass(frozen=True)
class Filters:
    """Which items may be recommended.

    Parameters
    ----------
    exclude_seen : bool
        Leave out the items the user has interacted with.
    allowed : numpy.ndarray, optional
        Boolean mask over the model's items (``model.item_ids_``), e.g. in stock, a category, a
        price range: see :func:`models.recommend.filters.item_mask`.
    exclude : tuple of str
        Item ids never to return.
    """

    exclude_seen: bool = True
    allowed: np.ndarray | None = None
    exclude: tuple[str, ...] = ()


class Recommender(ABC):
    """Base of the recommenders: ``fit``, ``recommend``, ``similar_items``.

    Learned attributes: ``data_`` (the :class:`Interactions` fitted on), ``item_ids_`` and
    ``user_ids_`` (the id maps), plus each model's own.
    """

    #: False for models whose scores don't depend on the user (popularity).
    personalized: ClassVar[bool] = True

    def fit(self, data: Interactions) -> Self:
        """Learn from ``data``; returns ``self``."""
        self.data_ = data
        self.user_ids_ = data.user_ids
        self.item_ids_ = data.item_ids
        self._learn(data)
        return self

    @abstractmethod
    def _learn(self, data: Interactions) -> None:
        """Set the model's learned attributes."""

    @abstractmethod
    def user_scores(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for the users at rows ``users``: dense ``(len(users), n_items)``,
        higher is better."""

    @abstractmethod
    def item_scores(self, items: np.ndarray) -> np.ndarray:
        """Similarity of every item to the items at columns ``items``: ``(len(items), n_items)``."""

    def get_params(self) -> dict:
        """The hyper-parameters ``__init__`` stored (scikit-learn's convention)."""
        return {name: value for name, value in vars(self).items() if not name.endswith("_") and not name.startswith("_")}

    # -- recommendations --------------------------------------------------------------------

    def recommend(self, user: int, n: int = 10, filters: Filters = Filters()) -> pd.DataFrame:
        """The ``n`` best items for profile ``user``.

        Returns
        -------
        pandas.DataFrame
            ``item_id``, ``score``, best first; fewer than ``n`` rows when the filters leave
            fewer items.

        Raises
        ------
        KeyError
            The profile had no interaction when the model was fitted (cold start is the
            caller's fallback).
        """
        row = self.data_.user_positions([user])[0]
        if row < 0:
            raise KeyError(f"profile {user} has no interactions in the model")
        top, scores = self.recommend_positions(np.array([row]), n, filters)
        return self._frame(top[0], scores[0])

    def recommend_positions(self, users: np.ndarray, n: int, filters: Filters = Filters()) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` item positions and scores for the users at rows ``users``; -1 pads a row
        whose filters leave fewer than ``n`` items."""
        tops, scores = [], []
        for batch in batches(users):
            batch_scores = self.user_scores(batch).astype(np.float32, copy=True)
            self._mask(batch_scores, filters, users=batch)
            top, score = top_n(batch_scores, n)
            tops.append(top)
            scores.append(score)
        if not tops:
            return np.empty((0, n), dtype=np.int64), np.empty((0, n), dtype=np.float32)
        return np.vstack(tops), np.vstack(scores)

    def similar_items(self, item: str, n: int = 10, filters: Filters = Filters(exclude_seen=False)) -> pd.DataFrame:
        """The ``n`` items most similar to ``item`` (never the item itself); ``filters.exclude_seen``
        does not apply.

        Raises
        ------
        KeyError
            ``item`` was not among the items fitted on.
        """
        column = self.data_.item_positions([item])[0]
        if column < 0:
            raise KeyError(f"item {item!r} is not in the model")
        scores = self.item_scores(np.array([column])).astype(np.float32, copy=True)
        scores[0, column] = -np.inf
        self._mask(scores, Filters(exclude_seen=False, allowed=filters.allowed, exclude=filters.exclude))
        top, score = top_n(scores, n)
        return self._frame(top[0], score[0])

    def _mask(self, scores: np.ndarray, filters: Filters, users: np.ndarray | None = None) -> None:
        if filters.exclude_seen and users is not None:
            mask_seen(scores, self.data_.seen[users])
        if filters.allowed is not None:
            if len(filters.allowed) != scores.shape[1]:
                raise ValueError("filters.allowed must have one flag per item of the model")
            scores[:, ~np.asarray(filters.allowed, dtype=bool)] = -np.inf
        if filters.exclude:
            excluded = self.data_.item_positions(list(filters.exclude))
            scores[:, excluded[excluded >= 0]] = -np.inf

    def _frame(self, top: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        kept = top >= 0
        return pd.DataFrame({"item_id": self.item_ids_[top[kept]], "score": scores[kept].astype("float64")})


def mask_seen(scores: np.ndarray, seen: sparse.csr_matrix) -> None:
    """Set ``scores`` to -inf where ``seen`` (same shape) has an entry, in place."""
    scores[np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr)), seen.indices] = -np.inf


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the positions of the ``n`` highest finite scores, best first, and the scores;
    -1 / -inf where a row has fewer."""
    n_rows, n_items = scores.shape
    k = min(n, n_items)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n_items else np.tile(np.arange(n_items), (n_rows, 1))
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    best = np.take_along_axis(picked, order, axis=1)
    top = np.where(np.isfinite(best), top, -1)
    if k < n:
        top = np.hstack([top, np.full((n_rows, n - k), -1)])
        best = np.hstack([best, np.full((n_rows, n - k), -np.inf, dtype=best.dtype)])
    return top, best


def batches(rows: np.ndarray, size: int = BATCH_USERS) -> Iterator[np.ndarray]:
    """``rows`` in consecutive slices of ``size``."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
