"""What a model is compared with: recency only, the naive repeat rate, BTYD and a tuned single-cutoff GBM.

Each baseline predicts, for the rows of the same feature frame as the model, what the model
predicts: the probability of the label (``churn``, ``purchase``, ``goal``) or the expected
value (``value``). ``fit(X, y, cutoff)`` takes the same training rows as the model (those that
need no labels or no cutoffs ignore them); ``predict`` returns one number per row, so every
metric can be printed side by side.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss

from models.boosting import BoostedModel, latest_cutoff
from models.btyd import BtydFeatures
from models.metrics import normalized_gini

KINDS = ("churn", "purchase", "goal", "value")
NEVER_DAYS = 10_000.0  # the recency of a profile that never bought: longer than any history


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _activity_recency(kind: str) -> str:
    # Churn and goals are about any activity; purchases and value about buying.
    return "days_since_last_event" if kind in ("churn", "goal") else "recency_days"


class RecencyBaseline:
    """The label's mean as a monotone function of recency alone (isotonic regression).

    Parameters
    ----------
    kind : {"churn", "purchase", "goal", "value"}
        Chooses the recency: days since the last event (churn, goal) or since the last purchase
        (purchase, value; never bought counts as very long ago).

    Attributes
    ----------
    curve_ : IsotonicRegression
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series, cutoff: object = None) -> RecencyBaseline:
        self.curve_ = IsotonicRegression(increasing="auto", out_of_bounds="clip").fit(self._recency(X), np.asarray(y, float))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.curve_.predict(self._recency(X))

    def _recency(self, X: pd.DataFrame) -> np.ndarray:
        return X[_activity_recency(_check_kind(self.kind))].fillna(NEVER_DAYS).to_numpy(float)


class RepeatRateBaseline:
    """Each profile keeps its past rate: a Poisson forecast from counts per day of history.

    Purchases per day of tenure give P(at least one purchase) = 1 - exp(-rate x horizon) and
    value = rate x horizon x average order value; for churn, events per day of the last 90 days
    give P(no event) = exp(-rate x horizon). Nothing is learned: ``fit`` only checks the kind.

    Parameters
    ----------
    kind : {"churn", "purchase", "goal", "value"}
    horizon_days : float
    """

    def __init__(self, kind: str, horizon_days: float) -> None:
        self.kind = kind
        self.horizon_days = horizon_days

    def fit(self, X: pd.DataFrame, y: object = None, cutoff: object = None) -> RepeatRateBaseline:
        _check_kind(self.kind)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        tenure = X["tenure_days"].clip(lower=1.0)
        if self.kind == "churn":
            rate = X["events_90d"] / tenure.clip(upper=90.0)
            return np.exp(-rate * self.horizon_days).to_numpy(float)
        rate = X["frequency"] / tenure
        if self.kind == "value":
            return (rate * self.horizon_days * X["avg_order_value"].fillna(0.0)).to_numpy(float)
        return (1.0 - np.exp(-rate * self.horizon_days)).to_numpy(float)


class BtydBaseline:
    """BG/NBD (and Gamma-Gamma for value) fitted on the frame's BTYD columns.

    Purchase and goal: P(a purchase in the window); churn: P(no purchase in the window), the
    BTYD reading of "gone"; value: expected purchases x expected order value. Labels are not
    used: BTYD learns from the purchase histories alone.

    Parameters
    ----------
    kind : {"churn", "purchase", "goal", "value"}
    horizon_days : float

    Attributes
    ----------
    btyd_ : BtydFeatures
    """

    def __init__(self, kind: str, horizon_days: float) -> None:
        self.kind = kind
        self.horizon_days = horizon_days

    def fit(self, X: pd.DataFrame, y: object = None, cutoff: object = None) -> BtydBaseline:
        _check_kind(self.kind)
        self.btyd_ = BtydFeatures(self.horizon_days).fit(X)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        out = self.btyd_.transform(X)
        if self.kind == "value":
            return out["btyd_expected_value"].to_numpy(float)
        purchase = out["btyd_p_purchase"].to_numpy(float)
        return 1.0 - purchase if self.kind == "churn" else purchase


class SingleCutoffGbm(BoostedModel):
    """LightGBM on one snapshot -- the features at the latest training cutoff, the label after it -- tuned.

    The usual model of LTV and churn studies (one calibration period, one holdout period), given
    its best chance: the same design as the model (features and BTYD columns), and a small
    search of tree sizes (and for values the loss: squared error or Tweedie) on a random quarter
    of the snapshot's profiles, scored by the gate's metric (normalized Gini for values, log loss
    for probabilities); the winner is refitted on the whole snapshot with the rounds it needed.
    What the model adds over it is the stacking of cutoffs and the out-of-time calibration.

    Parameters
    ----------
    kind : {"churn", "purchase", "goal", "value"}
    horizon_days : float
    validation_share : float
        Share of the snapshot's profiles held out to choose the hyper-parameters.

    Attributes
    ----------
    params_ : dict
        The hyper-parameters chosen (``objective``, tree sizes, ``n_estimators``).
    booster_ : lightgbm.LGBMModel
    """

    TREES = ({"num_leaves": 7, "min_child_samples": 20}, {"num_leaves": 15, "min_child_samples": 40},
             {"num_leaves": 31, "min_child_samples": 80}, {"num_leaves": 63, "min_child_samples": 160})

    def __init__(self, kind: str, horizon_days: float, *, validation_share: float = 0.25, random_state: int = 0) -> None:
        super().__init__(horizon_days, random_state=random_state)
        self.kind = kind
        self.validation_share = validation_share

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series, cutoff: np.ndarray | pd.Series) -> SingleCutoffGbm:
        _check_kind(self.kind)
        snapshot = latest_cutoff(cutoff)
        X, y = X[snapshot], np.asarray(y, dtype=float)[snapshot]
        design = self._fit_design(X, np.ones(len(X), dtype=bool))
        validation = np.random.default_rng(self.random_state).random(len(X)) < self.validation_share
        objectives = ("regression", "tweedie") if self.kind == "value" else ("binary",)
        tried = []
        for objective in objectives:
            for trees in self.TREES:
                params = {"objective": objective, **trees}
                booster = self._early_stopped(self._booster(params), design, y, ~validation, validation)
                params["n_estimators"] = max(1, booster.best_iteration_ or self.n_estimators)
                tried.append((self._validation_score(y[validation], self._predicted(booster, design[validation])), params))
        self.params_ = max(tried, key=lambda scored: scored[0])[1]
        self.booster_ = self._booster(self.params_).fit(design, y)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self._predicted(self.booster_, self.design(X))

    def _booster(self, params: dict[str, Any]) -> lgb.LGBMModel:
        chosen = {**self._booster_params(), **params}
        return lgb.LGBMRegressor(**chosen) if self.kind == "value" else lgb.LGBMClassifier(**chosen)

    def _predicted(self, booster: lgb.LGBMModel, design: pd.DataFrame) -> np.ndarray:
        return booster.predict(design) if self.kind == "value" else booster.predict_proba(design)[:, 1]

    def _validation_score(self, y: np.ndarray, prediction: np.ndarray) -> float:
        if self.kind == "value":
            return normalized_gini(y, prediction)
        return -log_loss(y, np.clip(prediction, 1e-6, 1 - 1e-6), labels=[0, 1])

    def _boosters(self) -> list[lgb.LGBMModel]:
        return [self.booster_]


Baseline = RecencyBaseline | RepeatRateBaseline | BtydBaseline | SingleCutoffGbm


def baselines(kind: str, horizon_days: float) -> dict[str, Baseline]:
    """The baselines of a prediction kind, unfitted, by name."""
    return {
        "recency": RecencyBaseline(kind),
        "repeat_rate": RepeatRateBaseline(kind, horizon_days),
        "btyd": BtydBaseline(kind, horizon_days),
        "single_cutoff_gbm": SingleCutoffGbm(kind, horizon_days),
    }
