"""The baseline every model is measured against: the items most people interacted with lately."""

from __future__ import annotations

import numpy as np

from models.recommend.base import Recommender
from models.recommend.data import Interactions


class PopularityRecommender(Recommender):
    """An item's score: the people who interacted with it, each counted by how recently.

    Parameters
    ----------
    half_life_days : float, optional
        A person's vote halves every ``half_life_days`` since their last interaction with the
        item: a week makes it "trending", ``None`` all-time popularity.
    """

    personalized = False

    def __init__(self, half_life_days: float | None = 30.0) -> None:
        self.half_life_days = half_life_days

    def _learn(self, data: Interactions) -> None:
        # One vote per (person, item), from their latest interaction: a bot viewing an item a
        # hundred times is one person.
        latest = data.events.groupby(["user", "item"], sort=False)["timestamp"].max()
        votes = np.ones(len(latest))
        if self.half_life_days is not None:
            age_days = (data.as_of - latest).dt.total_seconds().to_numpy() / 86400.0
            votes = np.exp2(-np.maximum(age_days, 0.0) / self.half_life_days)
        items = latest.index.get_level_values("item").to_numpy()
        self.popularity_ = np.bincount(items, weights=votes, minlength=data.n_items).astype(np.float32)

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(users), len(self.popularity_)))

    def item_scores(self, items: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(items), len(self.popularity_)))
