"""Item-based k-nearest neighbours (Sarwar et al. 2001; Deshpande & Karypis 2004)."""

from __future__ import annotations

import numpy as np
from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight
from sklearn.preprocessing import normalize

from models.recommend.base import Recommender
from models.recommend.data import Interactions

WEIGHTINGS = ("cosine", "bm25")


class ItemKNNRecommender(Recommender):
    """A user's score of an item: the sum of its similarities to the user's items, each times
    the user's weight of that item. Each item keeps its ``k`` most similar items.

    Parameters
    ----------
    k : int
        Neighbours kept per item.
    weighting : {"cosine", "bm25"}
        Cosine of the items' user vectors, or the same after BM25 weighting (heavy users and
        popular items count less).
    k1, b : float
        BM25's saturation and length normalisation.
    """

    def __init__(self, k: int = 100, weighting: str = "cosine", k1: float = 1.2, b: float = 0.75) -> None:
        self.k = k
        self.weighting = weighting
        self.k1 = k1
        self.b = b

    def _learn(self, data: Interactions) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")
        # implicit's Cosine- and BM25Recommender hand its kNN a COO matrix and warn: weigh here.
        if self.weighting == "cosine":
            weighted = normalize(data.matrix.astype(np.float64), axis=0).tocsr()  # unit item columns: dots are cosines
        else:
            weighted = bm25_weight(data.matrix.T, K1=self.k1, B=self.b).T.tocsr()
        neighbours = ItemItemRecommender(K=self.k, num_threads=1)
        neighbours.fit(weighted, show_progress=False)
        similarity = neighbours.similarity.tocsr().astype(np.float32)
        similarity.setdiag(0.0)
        similarity.eliminate_zeros()
        self.similarity_ = similarity

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return (self.data_.matrix[users] @ self.similarity_).toarray()

    def item_scores(self, items: np.ndarray) -> np.ndarray:
        return self.similarity_[items].toarray()
