"""Calibrated LightGBM probabilities for churn, purchase and custom goals."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.boosting import BoostedModel, out_of_time_split

CALIBRATIONS = ("isotonic", "platt")


class PropensityClassifier(BoostedModel):
    """P(label = 1) from a LightGBM classifier calibrated on the latest cutoff of its training frame.

    The booster fits the earlier cutoffs; its scores on the latest cutoff (out of time) fit the
    calibrator, so the probabilities are honest for a population one step later than the
    training data, as scoring will be. Then the booster is fitted again on every cutoff, the latest
    too, for the rounds early stopping chose (``refit_latest``): the latest cutoff is the population
    nearest the one scored. On CDNOW's transaction log, where the earlier cutoffs are mostly
    customers just acquired and the latest ones a year-old cohort, that took the purchase ROC AUC
    from 0.706 to 0.722, past BTYD's 0.718; the calibrator stays the one fitted out of time.

    Parameters
    ----------
    horizon_days : float
        The label window.
    calibration : {"platt", "isotonic"}
        A logistic fit on the raw log-odds, or isotonic regression on the raw probability.
        Platt by default: the calibration fold is one cutoff, and isotonic steps fitted on it
        tie many profiles and reach 0 and 1 exactly.
    refit_latest : bool
        Fit the booster again on every cutoff once calibrated, keeping the calibrated level on
        the latest one. Off where a caller still needs the latest cutoff out of sample
        (:class:`models.value.ValueRegressor` compares shapes on it first, then calls :meth:`refit`).
    **params
        LightGBM hyper-parameters of :class:`models.boosting.BoostedModel`.

    Attributes
    ----------
    booster_ : lightgbm.LGBMClassifier
    calibrator_ : IsotonicRegression or LogisticRegression
    btyd_ : BtydFeatures or None
    feature_names_in_ : list of str
    """

    def __init__(self, horizon_days: float, *, calibration: str = "platt", refit_latest: bool = True,
                 **params: object) -> None:
        super().__init__(horizon_days, **params)  # type: ignore[arg-type]
        self.calibration = calibration
        self.refit_latest = refit_latest

    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series, cutoff: np.ndarray | pd.Series) -> PropensityClassifier:
        """Fit on the feature columns ``X`` (see :func:`models.boosting.feature_frame`), 0/1 labels ``y``
        and each row's ``cutoff``; the latest cutoff calibrates."""
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}")
        y = np.asarray(y, dtype=int)
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be 0 or 1")
        fit_rows, calibration_rows = out_of_time_split(cutoff)
        for rows, name in ((fit_rows, "training"), (calibration_rows, "calibration")):
            if len(np.unique(y[rows])) < 2:
                raise ValueError(f"the {name} cutoffs hold one class only")
        design = self._fit_design(X, fit_rows)
        self.booster_ = self._early_stopped(lgb.LGBMClassifier(**self._booster_params()), design, y, fit_rows,
                                            calibration_rows)
        raw = self.booster_.predict_proba(design[calibration_rows])[:, 1]
        if self.calibration == "isotonic":
            self.calibrator_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y[calibration_rows])
        else:
            self.calibrator_ = LogisticRegression(C=1e6).fit(_log_odds(raw), y[calibration_rows])
        self.classes_ = np.array([0, 1])
        if self.refit_latest:
            self._refit(design, y)
            self._keep_level(design[calibration_rows], float(self._calibrated(raw).mean()))
        return self

    def refit(self, X: pd.DataFrame, y: np.ndarray | pd.Series) -> PropensityClassifier:
        """Fit the booster again on all of ``X`` (the calibration cutoff too), for the rounds early stopping
        kept; the calibrator stays the one fitted out of time."""
        self._refit(self.design(X), np.asarray(y, dtype=int))
        return self

    def _refit(self, design: pd.DataFrame, y: np.ndarray) -> None:
        self.booster_ = self._refitted(self.booster_, design, y)

    def _keep_level(self, calibration: pd.DataFrame, level: float) -> None:
        """Move a Platt calibrator's intercept so that the refitted booster's mean probability on the
        calibration cutoff's rows (``calibration``, a design) is ``level``, the out-of-time one's there.

        The calibrator corrects the drift from the training cutoffs to the calibration one (a base
        rate that fell, say); the refitted booster has learned part of that drift from the
        calibration cutoff itself, and would otherwise have it corrected twice. On CDNOW's log,
        backtested with 273 days of history, it did: a mean probability of 0.131 for a realised
        rate of 0.177. An isotonic calibrator has no intercept: it is used as is.
        """
        if self.calibration != "platt":
            return
        log_odds = self.calibrator_.decision_function(_log_odds(self.booster_.predict_proba(calibration)[:, 1]))
        shift = brentq(lambda d: float(expit(log_odds + d).mean()) - level, -30.0, 30.0)
        self.calibrator_.intercept_ = self.calibrator_.intercept_ + shift

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, shape ``(n, 2)``: P(0), P(1)."""
        positive = self._calibrated(self.booster_.predict_proba(self.design(X))[:, 1])
        return np.column_stack([1.0 - positive, positive])

    def _calibrated(self, raw: np.ndarray) -> np.ndarray:
        if self.calibration == "isotonic":
            return self.calibrator_.predict(raw)
        return self.calibrator_.predict_proba(_log_odds(raw))[:, 1]

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row, per-feature contributions to the uncalibrated log-odds (LightGBM ``pred_contrib``)."""
        return self._contributions(self.booster_, self.design(X))

    def _boosters(self) -> list[lgb.LGBMModel]:
        return [self.booster_]


def _log_odds(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(p, 1e-6, 1 - 1e-6)).reshape(-1, 1)
