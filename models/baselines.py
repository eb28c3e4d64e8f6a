"""The classical answers a model must beat: recency only, the naive repeat rate, and BTYD.

Each baseline predicts, for the rows of the same feature frame as the model, what the model
predicts: the probability of the label (``churn``, ``purchase``, ``goal``) or the expected
value (``value``). ``predict`` returns that one number per row, so every metric can be printed
side by side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from models.btyd import BtydFeatures

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

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series) -> RecencyBaseline:
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

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series | None = None) -> RepeatRateBaseline:
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

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series | None = None) -> BtydBaseline:
        _check_kind(self.kind)
        self.btyd_ = BtydFeatures(self.horizon_days).fit(X)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        out = self.btyd_.transform(X)
        if self.kind == "value":
            return out["btyd_expected_value"].to_numpy(float)
        purchase = out["btyd_p_purchase"].to_numpy(float)
        return 1.0 - purchase if self.kind == "churn" else purchase


def baselines(kind: str, horizon_days: float) -> dict[str, RecencyBaseline | RepeatRateBaseline | BtydBaseline]:
    """The three baselines of a prediction kind, unfitted, by name."""
    return {
        "recency": RecencyBaseline(kind),
        "repeat_rate": RepeatRateBaseline(kind, horizon_days),
        "btyd": BtydBaseline(kind, horizon_days),
    }
