"""Temporal leave-last-N-out: what a user discovered last is held out, the rest trains.

Used by the offline evaluation (:mod:`models.recommend.evaluate`) and by models that learn from a
split of their own training data (the re-ranker of :mod:`models.recommend.rerank`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from models.recommend.data import Interactions


@dataclass(frozen=True)
class Split:
    """Training rows and what each evaluated user must find.

    Attributes
    ----------
    train : pandas.DataFrame
        Interaction rows (as :func:`features.interactions.read_interactions` returns).
    targets : pandas.DataFrame
        ``profile_id, item_id``: the held-out items, none of them in the user's training rows.
    """

    train: pd.DataFrame
    targets: pd.DataFrame


def leave_last_out(rows: pd.DataFrame, *, n: int = 1, min_history: int = 3) -> Split:
    """Hold out each user's last ``n`` discovered items and everything from their discovery on.

    Parameters
    ----------
    rows : pandas.DataFrame
        ``profile_id, item_id, timestamp`` and any other columns.
    n : int
        Items held out per user (more when several are discovered at the same moment, as the
        lines of one order are).
    min_history : int
        Users with fewer distinct items left for training are not evaluated (their rows all stay
        in training).
    """
    first = rows.groupby(["profile_id", "item_id"], sort=False)["timestamp"].min().reset_index()
    first = first.sort_values(["profile_id", "timestamp"], kind="stable", ignore_index=True)
    from_last = first.groupby("profile_id", sort=False).cumcount(ascending=False)
    boundary_of = first[from_last == n - 1].set_index("profile_id")["timestamp"]
    # Items discovered at the boundary moment go out together (the lines of an order).
    before = first["timestamp"] < first["profile_id"].map(boundary_of)
    left = before.groupby(first["profile_id"]).sum()
    boundary_of = boundary_of[left.reindex(boundary_of.index) >= min_history]
    boundary = rows["profile_id"].map(boundary_of)
    held = boundary.notna() & (rows["timestamp"] >= boundary)
    targets = first[first["profile_id"].isin(boundary_of.index)]
    targets = targets[targets["timestamp"] >= targets["profile_id"].map(boundary_of)]
    return Split(rows[~held].reset_index(drop=True), targets[["profile_id", "item_id"]].reset_index(drop=True))


def training_data(split: Split, *, item_ids: np.ndarray, half_life_days: float | None,
                  catalog: pd.DataFrame | None = None) -> Interactions:
    """The split's training rows as :class:`Interactions`, decayed to their last moment."""
    as_of = split.train["timestamp"].max().to_pydatetime()
    return Interactions.from_frame(split.train, as_of=as_of, half_life_days=half_life_days, item_ids=item_ids,
                                   catalog=catalog)


def relevant_items(data: Interactions, targets: pd.DataFrame) -> tuple[np.ndarray, sparse.csr_matrix]:
    """The rows of ``data`` of the users in ``targets`` and, per row, their target items as a boolean
    matrix over ``data``'s items; a target item ``data`` does not know is a column past the last."""
    user = data.user_positions(targets["profile_id"].to_numpy())
    item = data.item_positions(targets["item_id"].to_numpy())
    known = user >= 0
    users, row = np.unique(user[known], return_inverse=True)
    item = item[known]
    cells = (np.ones((item >= 0).sum(), dtype=bool), (row[item >= 0], item[item >= 0]))
    relevant = sparse.csr_matrix(cells, shape=(len(users), data.n_items))
    # An item unknown to training is still a target the model missed: count it, in no column.
    unknown = np.bincount(row[item < 0], minlength=len(users))
    if unknown.any():
        relevant = _with_extra_targets(relevant, unknown)
    return users, relevant


def _with_extra_targets(relevant: sparse.csr_matrix, extra: np.ndarray) -> sparse.csr_matrix:
    """``relevant`` with ``extra[u]`` more items per row in columns past the last (never shown)."""
    padding = sparse.csr_matrix(
        (np.ones(extra.sum(), dtype=bool), (np.repeat(np.arange(len(extra)), extra), _ranks_within(extra))),
        shape=(len(extra), max(int(extra.max()), 1)),
    )
    return sparse.hstack([relevant, padding], format="csr")


def _ranks_within(counts: np.ndarray) -> np.ndarray:
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
