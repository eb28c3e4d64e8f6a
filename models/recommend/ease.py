"""EASE: the closed-form item-item linear model of Steck (2019), "Embarrassingly Shallow Autoencoders"."""

from __future__ import annotations

import numpy as np

from models.recommend.base import Recommender
from models.recommend.data import Interactions


class EASERecommender(Recommender):
    """Item weights ``B`` minimising ``|X - XB|^2 + l2 |B|^2`` with ``diag(B) = 0``, in closed form.

    Parameters
    ----------
    l2 : float
        Ridge penalty; larger for sparser data.
    binary : bool
        Learn from "interacted or not" instead of the weights.
    max_items : int
        Refuse larger catalogs: the Gram matrix and its inverse are dense items x items
        (20,000 items take 3.2 GB in float64, twice).
    """

    def __init__(self, l2: float = 200.0, binary: bool = True, max_items: int = 20_000) -> None:
        self.l2 = l2
        self.binary = binary
        self.max_items = max_items

    def _learn(self, data: Interactions) -> None:
        if data.n_items > self.max_items:
            raise ValueError(f"EASE needs a dense {data.n_items} x {data.n_items} matrix; max_items is {self.max_items}")
        self.x_ = data.seen.astype(np.float64) if self.binary else data.matrix.astype(np.float64)
        gram = (self.x_.T @ self.x_).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        precision = np.linalg.inv(gram)
        weights = precision / -np.diag(precision)
        np.fill_diagonal(weights, 0.0)
        self.weights_ = weights.astype(np.float32)

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.x_[users] @ self.weights_)

    def item_scores(self, items: np.ndarray) -> np.ndarray:
        return self.weights_[items]
