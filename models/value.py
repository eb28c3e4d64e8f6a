"""Expected value in the window (LTV) for a zero-inflated target: hurdle or Tweedie LightGBM."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.boosting import BoostedModel, out_of_time_split
from models.classifier import PropensityClassifier
from models.metrics import normalized_gini

OBJECTIVES = ("auto", "hurdle", "tweedie")


class ValueRegressor(BoostedModel):
    """E[value in the window], its total calibrated on the latest cutoff of the training frame.

    Most profiles spend nothing in a window, a few spend a lot. Two shapes suit that:

    * ``hurdle``: P(value > 0) (a :class:`~models.classifier.PropensityClassifier`) times
      E[value | value > 0] (a gamma-deviance LightGBM fitted on the spenders);
    * ``tweedie``: one LightGBM with the Tweedie deviance, a point mass at 0 plus a gamma tail.

    ``auto`` fits both on the earlier cutoffs and keeps the one ranking the latest cutoff better
    (normalized Gini). Finally every prediction is scaled so that their sum on the latest cutoff
    equals the realised sum: the aggregate is what budgets are planned from.

    Parameters
    ----------
    horizon_days : float
        The label window.
    objective : {"auto", "hurdle", "tweedie"}
    tweedie_variance_power : float
        Between 1 (Poisson) and 2 (gamma).
    **params
        LightGBM hyper-parameters of :class:`models.boosting.BoostedModel`.

    Attributes
    ----------
    objective_ : str
        The shape kept.
    scale_ : float
        The aggregate calibration factor.
    validation_gini_ : dict
        Normalized Gini of each shape tried, on the latest cutoff.
    """

    def __init__(self, horizon_days: float, *, objective: str = "auto", tweedie_variance_power: float = 1.3,
                 **params: object) -> None:
        super().__init__(horizon_days, **params)  # type: ignore[arg-type]
        self.objective = objective
        self.tweedie_variance_power = tweedie_variance_power

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series, cutoff: np.ndarray | pd.Series) -> ValueRegressor:
        """Fit on the feature columns ``X``, non-negative values ``y`` and each row's ``cutoff``."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")
        y = np.asarray(y, dtype=float)
        if (y < 0).any() or np.isnan(y).any():
            raise ValueError("values must be non-negative")
        fit_rows, calibration_rows = out_of_time_split(cutoff)
        design = self._fit_design(X, fit_rows)
        shapes = ("hurdle", "tweedie") if self.objective == "auto" else (self.objective,)
        fitted = {
            shape: (self._fit_hurdle if shape == "hurdle" else self._fit_tweedie)(
                X, design, y, cutoff, fit_rows, calibration_rows)
            for shape in shapes
        }
        later = X[calibration_rows]
        self.validation_gini_ = {
            shape: normalized_gini(y[calibration_rows], self._raw(shape, parts, later)) for shape, parts in fitted.items()
        }
        self.objective_ = max(self.validation_gini_, key=self.validation_gini_.__getitem__)
        self.parts_ = fitted[self.objective_]
        predicted = self._raw(self.objective_, self.parts_, later).sum()
        self.scale_ = float(y[calibration_rows].sum() / predicted) if predicted > 0 else 1.0
        return self

    def _fit_hurdle(self, X: pd.DataFrame, design: pd.DataFrame, y: np.ndarray, cutoff: np.ndarray | pd.Series,
                    fit_rows: np.ndarray, calibration_rows: np.ndarray) -> dict[str, object]:
        spends = PropensityClassifier(self.horizon_days, **self.boosting_params()).fit(X, (y > 0).astype(int), cutoff)
        positive = y > 0
        magnitude = self._early_stopped(lgb.LGBMRegressor(objective="gamma", **self._booster_params()), design, y,
                                        fit_rows & positive, calibration_rows & positive)
        return {"spends": spends, "magnitude": magnitude}

    def _fit_tweedie(self, X: pd.DataFrame, design: pd.DataFrame, y: np.ndarray, cutoff: np.ndarray | pd.Series,
                     fit_rows: np.ndarray, calibration_rows: np.ndarray) -> dict[str, object]:
        booster = lgb.LGBMRegressor(objective="tweedie", tweedie_variance_power=self.tweedie_variance_power,
                                    **self._booster_params())
        return {"tweedie": self._early_stopped(booster, design, y, fit_rows, calibration_rows)}

    def _raw(self, shape: str, parts: dict[str, object], X: pd.DataFrame) -> np.ndarray:
        design = self.design(X)
        if shape == "hurdle":
            return parts["spends"].predict_proba(X)[:, 1] * parts["magnitude"].predict(design)  # type: ignore[attr-defined]
        return parts["tweedie"].predict(design)  # type: ignore[attr-defined]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected value of each row in the window (currency of the label)."""
        return self.scale_ * self._raw(self.objective_, self.parts_, X)

    def _boosters(self) -> list[lgb.LGBMModel]:
        if self.objective_ == "hurdle":
            return [self.parts_["spends"].booster_, self.parts_["magnitude"]]  # type: ignore[attr-defined,list-item]
        return [self.parts_["tweedie"]]  # type: ignore[list-item]

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions to the log of the prediction (Tweedie), or to the spend log-odds
        plus the log order value (hurdle): both read as "pushes the expected value up / down"."""
        design = self.design(X)
        if self.objective_ == "hurdle":
            return self.parts_["spends"].contributions(X) + self._contributions(self.parts_["magnitude"], design)
        return self._contributions(self.parts_["tweedie"], design)
