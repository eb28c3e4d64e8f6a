"""A weighted blend of recommenders, their scores standardised per user so they can be added."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.recommend.base import Recommender
from models.recommend.data import Interactions


class BlendRecommender(Recommender):
    """Sum of the components' per-row standardised scores, weighted.

    Parameters
    ----------
    components : mapping of str to Recommender
        Unfitted models; :meth:`fit` fits those with a non-zero weight (in place, as a
        scikit-learn ``Pipeline`` fits its steps).
    weights : mapping of str to float
        Weight of each component; a missing name weighs 0.
    """

    def __init__(self, components: Mapping[str, Recommender], weights: Mapping[str, float]) -> None:
        self.components = components
        self.weights = weights

    def _learn(self, data: Interactions) -> None:
        unknown = set(self.weights) - set(self.components)
        if unknown:
            raise ValueError(f"weights name unknown components: {sorted(unknown)}")
        self.active_ = {name: model for name, model in self.components.items() if self.weights.get(name, 0.0)}
        if not self.active_:
            raise ValueError("a blend needs a component with a non-zero weight")
        for model in self.active_.values():
            model.fit(data)

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return sum(self.weights[name] * standardize(model.user_scores(users)) for name, model in self.active_.items())

    def item_scores(self, items: np.ndarray) -> np.ndarray:
        return sum(self.weights[name] * standardize(model.item_scores(items)) for name, model in self.active_.items())


def standardize(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation (rows of equal scores become 0)."""
    scores = np.asarray(scores, dtype=np.float32)
    spread = scores.std(axis=1, keepdims=True)
    return (scores - scores.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)
