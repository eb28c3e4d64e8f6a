"""Sequence-aware item-to-item recommendations: what people go on to look at next.

Transitions are counted between an item and the next few distinct items of the same session
(a run of a user's interactions without a gap over ``session_gap_minutes``), nearer ones
counting more, as in session-based kNN (Ludewig & Jannach 2018). A user is scored from their
last few items, the latest counting most.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from models.recommend.base import Recommender
from models.recommend.data import Interactions


class SessionRecommender(Recommender):
    """Item-to-item transitions within sessions, scored from the user's latest items.

    Parameters
    ----------
    steps : int
        An item is linked to the next ``steps`` items of its session, the ``d``-th with weight ``1/d``.
    session_gap_minutes : float
        A longer pause between two interactions starts a new session.
    history : int
        The user's last ``history`` distinct items are the query.
    history_decay : float
        The ``k``-th latest of them counts ``history_decay ** k``.
    backward : float
        Weight of a transition read backwards (the item seen before): views go both ways.
    popularity_penalty : float
        A transition ``i -> j`` is divided by ``count(i) * count(j) ** popularity_penalty``:
        0 ranks by "what came next", 1 by lift over ``j``'s popularity.
    """

    def __init__(self, steps: int = 3, session_gap_minutes: float = 30.0, history: int = 3, history_decay: float = 0.5,
                 backward: float = 0.5, popularity_penalty: float = 0.25) -> None:
        self.steps = steps
        self.session_gap_minutes = session_gap_minutes
        self.history = history
        self.history_decay = history_decay
        self.backward = backward
        self.popularity_penalty = popularity_penalty

    def _learn(self, data: Interactions) -> None:
        user, item, moment = _collapsed(data.events)
        gap = np.diff(moment) > np.timedelta64(int(self.session_gap_minutes * 60e6), "us")
        session = np.concatenate([[0], np.cumsum((np.diff(user) != 0) | gap)])
        sources, targets, weights = [], [], []
        for d in range(1, self.steps + 1):
            same = session[:-d] == session[d:]
            sources.append(item[:-d][same])
            targets.append(item[d:][same])
            weights.append(np.full(same.sum(), 1.0 / d))
        shape = (data.n_items, data.n_items)
        forward = sparse.csr_matrix((np.concatenate(weights), (np.concatenate(sources), np.concatenate(targets))), shape=shape)
        linked = (forward + self.backward * forward.T).tocsr()
        linked.setdiag(0.0)
        linked.eliminate_zeros()
        count = np.maximum(np.bincount(item, minlength=data.n_items), 1).astype(np.float64)
        scale = sparse.diags(1.0 / count) @ linked @ sparse.diags(count ** -self.popularity_penalty)
        self.transitions_ = sparse.csr_matrix(scale, dtype=np.float32)
        self.recent_ = self._recent_items(data)

    def _recent_items(self, data: Interactions) -> sparse.csr_matrix:
        """Users x items: the weight of each of a user's last ``history`` distinct items."""
        last = data.events.drop_duplicates(["user", "item"], keep="last")
        rank = last.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
        kept = rank < self.history
        return sparse.csr_matrix(
            (self.history_decay ** rank[kept], (last["user"].to_numpy()[kept], last["item"].to_numpy()[kept])),
            shape=(data.n_users, data.n_items), dtype=np.float32,
        )

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return (self.recent_[users] @ self.transitions_).toarray()

    def item_scores(self, items: np.ndarray) -> np.ndarray:
        return self.transitions_[items].toarray()


def _collapsed(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User, item and time of each interaction, minus repeats of the user's previous item (a
    view, an add and an order of one product are one step)."""
    user = events["user"].to_numpy()
    item = events["item"].to_numpy()
    repeat = np.concatenate([[False], (user[1:] == user[:-1]) & (item[1:] == item[:-1])])
    moment = events["timestamp"].dt.tz_convert(None).to_numpy()
    return user[~repeat], item[~repeat], moment[~repeat]
