"""Matrix factorisation with implicit (CPU): ALS (Hu, Koren, Volinsky 2008) and BPR (Rendle 2009)."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from threadpoolctl import threadpool_limits
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.cpu.matrix_factorization_base import MatrixFactorizationBase

from models.recommend.base import Recommender
from models.recommend.data import Interactions


class _Factorization(Recommender):
    """Scores are dot products of user and item factors; similar items by cosine of item factors."""

    @abstractmethod
    def _estimator(self) -> MatrixFactorizationBase:
        """An unfitted implicit model with this model's hyper-parameters."""

    def _learn(self, data: Interactions) -> None:
        # Single-threaded, BLAS too: the machine's cores are shared, and ALS's many small BLAS calls
        # are only slowed by OpenBLAS's own threads (implicit warns about them in `cdp recs train`).
        with threadpool_limits(limits=1, user_api="blas"):
            estimator = self._estimator()
            estimator.fit(data.matrix, show_progress=False)  # implicit 0.7 fits on users x items
        self.user_factors_ = np.asarray(estimator.user_factors)
        self.item_factors_ = np.asarray(estimator.item_factors)
        norms = np.linalg.norm(self.item_factors_, axis=1, keepdims=True)
        self.item_unit_ = self.item_factors_ / np.where(norms > 0, norms, 1.0)

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T

    def item_scores(self, items: np.ndarray) -> np.ndarray:
        return self.item_unit_[items] @ self.item_unit_.T


class ALSRecommender(_Factorization):
    """Implicit-feedback alternating least squares.

    Parameters
    ----------
    factors : int
        Latent dimensions.
    regularization : float
        L2 penalty on the factors.
    alpha : float
        Confidence per unit of interaction weight (``1 + alpha * weight``).
    iterations : int
        ALS sweeps.
    random_state : int
        Seed of the initial factors.
    """

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0, iterations: int = 15,
                 random_state: int = 0) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state

    def _estimator(self) -> MatrixFactorizationBase:
        return AlternatingLeastSquares(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                                       iterations=self.iterations, random_state=self.random_state, num_threads=1)


class BPRRecommender(_Factorization):
    """Bayesian personalised ranking by SGD over (user, seen item, unseen item) triples.

    Parameters
    ----------
    factors : int
        Latent dimensions.
    learning_rate : float
        SGD step.
    regularization : float
        L2 penalty on the factors.
    iterations : int
        Epochs.
    random_state : int
        Seed of the initial factors and the sampling.
    """

    def __init__(self, factors: int = 64, learning_rate: float = 0.05, regularization: float = 0.01,
                 iterations: int = 100, random_state: int = 0) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state

    def _estimator(self) -> MatrixFactorizationBase:
        return BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                           regularization=self.regularization, iterations=self.iterations,
                                           random_state=self.random_state, num_threads=1)
