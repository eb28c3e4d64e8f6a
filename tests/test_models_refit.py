"""Fitting the boosters again on the calibration cutoff keeps the level that cutoff calibrated.

The calibration (a Platt fit, the value's aggregate scale) corrects the drift from the training
cutoffs to the latest one; the refitted booster learns part of that drift from the latest
cutoff's own labels. Planted here: the base rate halves at the latest cutoff and stays there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.classifier import PropensityClassifier
from models.value import ValueRegressor

CUTOFFS = pd.date_range("2026-01-05", periods=5, freq="7D", tz="UTC")  # four to fit on, then the one scored
ROWS = 4000


def drifting(draw: object, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``X, y, cutoff`` over CUTOFFS: the first three at the old level, the last two at the new one."""
    rng = np.random.default_rng(seed)
    cutoff = np.repeat(CUTOFFS, ROWS)
    X = pd.DataFrame({"signal": rng.normal(size=len(cutoff)), "noise": rng.normal(size=len(cutoff))})
    late = np.isin(cutoff, CUTOFFS[3:])
    return X, draw(rng, X["signal"].to_numpy(), late), cutoff  # type: ignore[operator]


def test_a_refitted_classifier_keeps_the_calibrated_base_rate() -> None:
    X, y, cutoff = drifting(lambda rng, s, late: (rng.random(len(s)) < 1 / (1 + np.exp(-(s - 1.5 * late)))).astype(int), 0)
    fit, scored = cutoff < CUTOFFS[4], cutoff == CUTOFFS[4]
    truth = y[scored].mean()
    anchored = PropensityClassifier(7.0, n_estimators=60).fit(X[fit], y[fit], cutoff[fit])
    assert anchored.predict_proba(X[scored])[:, 1].mean() == pytest.approx(truth, abs=0.02)
    # The same refit without the anchor corrects the fall twice.
    twice = PropensityClassifier(7.0, n_estimators=60, refit_latest=False).fit(X[fit], y[fit], cutoff[fit])
    twice.refit(X[fit], y[fit])
    assert twice.predict_proba(X[scored])[:, 1].mean() < truth - 0.04


def test_a_refitted_value_model_keeps_the_calibrated_total() -> None:
    X, y, cutoff = drifting(lambda rng, s, late: rng.gamma(2.0, np.exp(s / 2) * np.where(late, 2.5, 5.0)), 1)
    fit, scored = cutoff < CUTOFFS[4], cutoff == CUTOFFS[4]
    model = ValueRegressor(7.0, objective="tweedie", calibration_cutoffs=1, n_estimators=60).fit(X[fit], y[fit], cutoff[fit])
    assert model.predict(X[scored]).sum() / y[scored].sum() == pytest.approx(1.0, abs=0.06)
