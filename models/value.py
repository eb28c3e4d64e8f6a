"""Expected value in the window (LTV) for a zero-inflated target: hurdle or Tweedie LightGBM."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.boosting import BoostedModel, cutoff_times, out_of_time_split
from models.classifier import PropensityClassifier
from models.metrics import normalized_gini

OBJECTIVES = ("auto", "hurdle", "tweedie")


def aggregate_scale(y: np.ndarray, predicted: np.ndarray, variance_power: float) -> float:
    """The factor ``s`` that makes ``s x predicted`` match the values ``y`` in total, by quasi-likelihood.

    Solves ``sum((y - s p) p^(1 - variance_power)) = 0``, the estimating equation of a Tweedie
    variance ``var(y) ∝ p^variance_power``. Power 1 gives the plain ratio of totals; a spend's
    variance grows faster than its mean (power 1.2-1.5 on the simulated shop), and weighing each
    profile by it keeps the few largest realised spends of one window from setting the factor.
    Unbiased whenever ``E[y] = s p``, whatever the power. 1 when nothing is predicted.
    """
    y, predicted = np.asarray(y, dtype=float), np.asarray(predicted, dtype=float)
    if predicted.sum() <= 0:
        return 1.0
    # A floor: LightGBM's exp-link predictions are positive, but p ** (1 - power) must stay finite.
    p = np.maximum(predicted, 1e-6 * predicted.mean())
    weight = p ** (1.0 - variance_power)
    return float((weight * y).sum() / (weight * p).sum())


class ValueRegressor(BoostedModel):
    """E[value in the window], its total calibrated out of time on the latest cutoffs of the training frame.

    Most profiles spend nothing in a window, a few spend a lot. Two shapes suit that:

    * ``hurdle``: P(value > 0) (a :class:`~models.classifier.PropensityClassifier`) times
      E[value | value > 0] (a gamma-deviance LightGBM fitted on the spenders);
    * ``tweedie``: one LightGBM with the Tweedie deviance, a point mass at 0 plus a gamma tail.

    ``auto`` fits both on the earlier cutoffs and keeps the one ranking the latest cutoff better
    (normalized Gini). Finally every prediction is scaled so that their total matches the
    realised one: the aggregate is what budgets are planned from. One window's total is noisy
    (a few big spenders make it), so the factor is pooled over the latest
    ``calibration_cutoffs`` cutoffs, each predicted by a model of the kept shape fitted only on
    cutoffs whose label windows end by it (the latest by the model itself), and weighted by the
    Tweedie variance (:func:`aggregate_scale`). Then the kept shape is fitted again on every
    cutoff, the latest too, for the rounds early stopping chose: the model that predicts has seen
    the population nearest the one it scores.

    Parameters
    ----------
    horizon_days : float
        The label window.
    objective : {"auto", "hurdle", "tweedie"}
    tweedie_variance_power : float
        Between 1 (Poisson) and 2 (gamma): of the Tweedie deviance, and of the weights of the
        aggregate calibration.
    calibration_cutoffs : int
        How many of the latest cutoffs the aggregate factor is pooled over; fewer when the earlier
        ones have no cutoff before them to fit on (or no spender). Each one but the latest costs
        a fit of the kept shape.
    **params
        LightGBM hyper-parameters of :class:`models.boosting.BoostedModel`.

    Attributes
    ----------
    objective_ : str
        The shape kept.
    scale_ : float
        The aggregate calibration factor: realised over predicted values, pooled out of time
        over ``calibration_cutoffs_`` (:func:`aggregate_scale`); every prediction is multiplied by
        it. Measured on the latest cutoff alone, it is carried over to the refitted model instead:
        that model predicts the latest cutoff's total as the scaled out-of-time one did.
    calibration_cutoffs_ : list of pandas.Timestamp
        The cutoffs ``scale_`` was estimated on, oldest first.
    validation_gini_ : dict
        Normalized Gini of each shape tried, on the latest cutoff.
    """

    def __init__(self, horizon_days: float, *, objective: str = "auto", tweedie_variance_power: float = 1.3,
                 calibration_cutoffs: int = 3, **params: object) -> None:
        super().__init__(horizon_days, **params)  # type: ignore[arg-type]
        self.objective = objective
        self.tweedie_variance_power = tweedie_variance_power
        self.calibration_cutoffs = calibration_cutoffs

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series, cutoff: np.ndarray | pd.Series) -> ValueRegressor:
        """Fit on the feature columns ``X``, non-negative values ``y`` and each row's ``cutoff``."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")
        if self.calibration_cutoffs < 1:
            raise ValueError("calibration_cutoffs must be at least 1")
        y = np.asarray(y, dtype=float)
        if (y < 0).any() or np.isnan(y).any():
            raise ValueError("values must be non-negative")
        shapes = ("hurdle", "tweedie") if self.objective == "auto" else (self.objective,)
        fitted, calibration_rows = self._fit_shapes(X, y, cutoff, shapes)
        later = X[calibration_rows]
        raw = {shape: self._raw(shape, parts, later) for shape, parts in fitted.items()}
        self.validation_gini_ = {shape: normalized_gini(y[calibration_rows], raw[shape]) for shape in fitted}
        self.objective_ = max(self.validation_gini_, key=self.validation_gini_.__getitem__)
        self.parts_ = fitted[self.objective_]
        windows = self._earlier_windows(X, y, cutoff)
        windows[cutoff_times(cutoff).max()] = (y[calibration_rows], raw[self.objective_])
        self.calibration_cutoffs_ = list(windows)
        values, predictions = zip(*windows.values(), strict=True)
        self.scale_ = aggregate_scale(np.concatenate(values), np.concatenate(predictions), self.tweedie_variance_power)
        self.parts_ = self._refitted_parts(X, y)
        if len(self.calibration_cutoffs_) == 1:
            # Measured on the latest cutoff alone, the factor is exactly what the model before the
            # refit missed there, and the refit learned it from those rows' own labels: applied
            # as is, the miss would be corrected twice (on CDNOW's log with 273 days of history,
            # a held-out total at a fifth of the truth). The refitted model keeps the total the
            # factor gave that cutoff instead. Pooled over several windows, the factor is the
            # pipeline's bias one window ahead, which the refitted model shares: it applies as is.
            refitted = self._raw(self.objective_, self.parts_, later).mean()
            if refitted > 0:
                self.scale_ = float(self.scale_ * raw[self.objective_].mean() / refitted)
        return self

    def _refitted_parts(self, X: pd.DataFrame, y: np.ndarray) -> dict[str, object]:
        """The kept shape fitted again on every cutoff, the latest too, for the rounds early stopping kept.

        The latest cutoff is the population nearest the one scored; used only to stop and
        calibrate, its labels would not shape a single tree (on the simulated shop: +0.001 to
        +0.005 normalized Gini on held-out cutoffs of five seeds). The rounds, and the hurdle's
        Platt calibrator, stay those chosen out of time; ``scale_`` measured a model predicting
        one window past its data, as this one does.
        """
        design = self.design(X)
        if self.objective_ == "hurdle":
            positive = y > 0
            magnitude = self._refitted(self.parts_["magnitude"], design[positive], y[positive])  # type: ignore[arg-type]
            return {"spends": self.parts_["spends"].refit(X, positive.astype(int)), "magnitude": magnitude}  # type: ignore[attr-defined]
        return {"tweedie": self._refitted(self.parts_["tweedie"], design, y)}  # type: ignore[arg-type]

    def _fit_shapes(self, X: pd.DataFrame, y: np.ndarray, cutoff: np.ndarray | pd.Series,
                    shapes: tuple[str, ...]) -> tuple[dict[str, dict[str, object]], np.ndarray]:
        """Each shape fitted on the earlier cutoffs, stopped on the latest; and the mask of the latest."""
        fit_rows, calibration_rows = out_of_time_split(cutoff)
        design = self._fit_design(X, fit_rows)
        fitted = {
            shape: (self._fit_hurdle if shape == "hurdle" else self._fit_tweedie)(
                X, design, y, cutoff, fit_rows, calibration_rows)
            for shape in shapes
        }
        return fitted, calibration_rows

    def _earlier_windows(self, X: pd.DataFrame, y: np.ndarray,
                         cutoff: np.ndarray | pd.Series) -> dict[pd.Timestamp, tuple[np.ndarray, np.ndarray]]:
        """``(values, raw predictions)`` by cutoff, oldest first, on the cutoffs before the latest that
        the factor is pooled over.

        Each is predicted by a fresh model of the kept shape, fitted on the cutoffs whose label
        windows end by it (so it never saw that window) and stopped on it, as the model is on the latest.
        """
        when = cutoff_times(cutoff)
        horizon = pd.Timedelta(days=self.horizon_days)
        windows = {}
        for window in sorted(when.unique())[-self.calibration_cutoffs:-1]:
            at = (when == window).to_numpy()
            seen = (when + horizon <= window).to_numpy()
            # The hurdle needs spenders and non-spenders on both sides; so does a meaningful Tweedie fit.
            if not all(0 < (y[rows] > 0).sum() < rows.sum() for rows in (at, seen)):
                continue
            rows = at | seen
            earlier = ValueRegressor(self.horizon_days, objective=self.objective_,
                                     tweedie_variance_power=self.tweedie_variance_power, **self.boosting_params())
            parts = earlier._fit_shapes(X[rows], y[rows], np.asarray(cutoff)[rows], (self.objective_,))[0][self.objective_]
            windows[window] = (y[at], earlier._raw(self.objective_, parts, X[at]))
        return windows

    def _fit_hurdle(self, X: pd.DataFrame, design: pd.DataFrame, y: np.ndarray, cutoff: np.ndarray | pd.Series,
                    fit_rows: np.ndarray, calibration_rows: np.ndarray) -> dict[str, object]:
        spends = PropensityClassifier(self.horizon_days, refit_latest=False, **self.boosting_params()).fit(
            X, (y > 0).astype(int), cutoff)
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
