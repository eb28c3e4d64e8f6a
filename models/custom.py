"""Bring your own model: any scikit-learn estimator trained, evaluated and registered as a prediction.

:func:`train_prediction` takes an ``estimator`` (``fit(X, y)`` and ``predict_proba(X)``, or
``predict(X)`` for values: a ``LogisticRegression`` pipeline, a random forest, ...). These
adapters give it the contract of the LightGBM predictors -- ``fit(X, y, cutoff)`` on the feature
columns of a training frame -- so the same out-of-time evaluation, baselines, gate, MLflow
registry and scoring apply. The estimator is cloned at each fit (scikit-learn's ``clone``), so
the one passed in stays unfitted; it sees the feature columns as they are (NaN included: impute
in the pipeline) and fits every cutoff it is given (calibrate it yourself if you need to, e.g.
with ``CalibratedClassifierCV``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone


class CustomModel:
    """Base of the adapters: stores the estimator; ``fit`` clones and fits it on ``X, y``.

    Parameters
    ----------
    estimator : scikit-learn estimator
        Unfitted; cloned at each fit.

    Attributes
    ----------
    estimator_ : fitted clone of ``estimator``
    feature_names_in_ : list of str
        The columns fitted on (scoring hands the model these columns, in this order).
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series, cutoff: np.ndarray | pd.Series | None = None) -> CustomModel:
        """Fit a clone of the estimator on ``X`` and ``y``; ``cutoff`` is accepted for the contract and not a feature."""
        self.feature_names_in_ = list(X.columns)
        self.estimator_ = clone(self.estimator).fit(X, np.asarray(y))
        return self

    def _columns(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the features the model was fitted on: {', '.join(missing)}")
        return X[self.feature_names_in_]


class CustomClassifier(CustomModel):
    """A scikit-learn classifier of 0/1 labels as a prediction model (churn, purchase, custom goals)."""

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series, cutoff: np.ndarray | pd.Series | None = None) -> CustomClassifier:
        if not hasattr(self.estimator, "predict_proba"):
            raise TypeError(f"{type(self.estimator).__name__} has no predict_proba: a probability prediction needs one")
        super().fit(X, y, cutoff)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities, shape ``(n, 2)``: P(0), P(1) (whatever order the estimator's classes are in)."""
        proba = self.estimator_.predict_proba(self._columns(X))
        positive = proba[:, list(self.estimator_.classes_).index(1)]
        return np.column_stack([1.0 - positive, positive])


class CustomRegressor(CustomModel):
    """A scikit-learn regressor of a value as a prediction model (LTV)."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected value of each row."""
        return np.asarray(self.estimator_.predict(self._columns(X)), dtype=float)


def custom_model(task: str, estimator: Any) -> CustomClassifier | CustomRegressor:
    """The adapter of a task (``value`` or a probability task) around an unfitted estimator."""
    return CustomRegressor(estimator) if task == "value" else CustomClassifier(estimator)
