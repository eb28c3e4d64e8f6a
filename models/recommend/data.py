"""What a recommender learns from: a user x item matrix, its id maps and the ordered events."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from datetime import datetime

import numpy as np
import pandas as pd
from scipy import sparse

from features.interactions import decayed_weights

ATTRIBUTES = ("category", "brand", "price")


@dataclass(frozen=True)
class Interactions:
    """Interactions of users with items, in the shapes the models need.

    Build it with :meth:`from_frame`. Rows are users, columns items; positions map to ids
    through ``user_ids`` and ``item_ids``.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix
        ``float32`` users x items: the sum of each pair's time-decayed interaction weights,
        kept where positive (a pair whose reviews outweigh its views is no evidence of taste).
    seen : scipy.sparse.csr_matrix
        ``bool`` users x items: every pair with any interaction, what "exclude seen" excludes.
    user_ids : numpy.ndarray
        Profile id of each row (int64, ascending).
    item_ids : numpy.ndarray
        Item id of each column (object, ascending).
    events : pandas.DataFrame
        One row per interaction, by user then time: ``user`` and ``item`` (positions, int32),
        ``timestamp`` (UTC), ``weight`` (decayed); for sequence-aware and trending models.
    as_of : datetime
        The moment the weights were decayed to.
    attributes : pandas.DataFrame, optional
        The items' ``category``, ``brand`` (str or None) and ``price`` (float, NaN when unknown),
        one row per column of ``matrix``, for models that use them; ``None`` without a catalog.
    """

    matrix: sparse.csr_matrix
    seen: sparse.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    events: pd.DataFrame
    as_of: datetime
    attributes: pd.DataFrame | None = None

    @classmethod
    def from_frame(
        cls,
        rows: pd.DataFrame,
        *,
        as_of: datetime,
        half_life_days: float | None = None,
        item_ids: np.ndarray | None = None,
        catalog: pd.DataFrame | None = None,
    ) -> Interactions:
        """Interactions from :func:`features.interactions.read_interactions` rows.

        Parameters
        ----------
        rows : pandas.DataFrame
            ``profile_id``, ``item_id``, ``timestamp``, ``weight``.
        as_of : datetime
            Moment the weights decay to (timezone-aware).
        half_life_days : float, optional
            Half-life of the time decay; ``None`` for none.
        item_ids : numpy.ndarray, optional
            The item universe (e.g. the whole catalog); items of ``rows`` outside it are
            dropped. Default: the items of ``rows``.
        catalog : pandas.DataFrame, optional
            Index ``item_id``; ``category``, ``brand``, ``price`` (as
            :func:`features.interactions.read_catalog` returns): becomes ``attributes``.
        """
        items = np.asarray(np.unique(rows["item_id"].to_numpy(dtype=object)) if item_ids is None else item_ids, dtype=object)
        item = pd.Index(items).get_indexer(rows["item_id"])
        rows = rows[item >= 0]
        item = item[item >= 0]
        users, user = np.unique(rows["profile_id"].to_numpy(dtype="int64"), return_inverse=True)
        weight = decayed_weights(rows, as_of=as_of, half_life_days=half_life_days)
        shape = (len(users), len(items))
        summed = sparse.csr_matrix((weight, (user, item)), shape=shape, dtype=np.float64)
        summed.sum_duplicates()
        seen = summed.astype(bool)
        seen.data[:] = True
        positive = summed.multiply(summed > 0).tocsr().astype(np.float32)
        positive.eliminate_zeros()
        events = pd.DataFrame({
            "user": user.astype(np.int32),
            "item": item.astype(np.int32),
            "timestamp": rows["timestamp"].reset_index(drop=True),  # to_numpy() would box every tz-aware moment
            "weight": weight,
        }).sort_values(["user", "timestamp"], kind="stable", ignore_index=True)
        attributes = None if catalog is None else catalog.reindex(pd.Index(items, dtype=object))[list(ATTRIBUTES)]
        return cls(positive, seen.tocsr(), users, items, events, as_of, attributes)

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    def user_positions(self, profile_ids: np.ndarray | list) -> np.ndarray:
        """Row of each profile id; -1 for a profile without interactions."""
        return _positions(self.user_ids, np.asarray(profile_ids, dtype="int64"))

    def item_positions(self, item_ids: np.ndarray | list) -> np.ndarray:
        """Column of each item id; -1 for an unknown item."""
        return self._item_index.get_indexer(pd.Index(np.asarray(item_ids, dtype=object)))

    @cached_property
    def _item_index(self) -> pd.Index:
        # Built once: serving looks up a request's recent items, and hashing a big catalog per call would dominate.
        return pd.Index(self.item_ids)


def _positions(sorted_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    at = np.searchsorted(sorted_ids, wanted)
    found = at < len(sorted_ids)
    found[found] = sorted_ids[at[found]] == wanted[found]
    return np.where(found, at, -1)
