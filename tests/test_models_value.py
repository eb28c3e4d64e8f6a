"""The aggregate calibration of LTV predictions: a planted factor recovered, steadier than a ratio of
totals, and only out-of-time windows pooled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.value import ValueRegressor, aggregate_scale

FACTOR, POWER = 1.25, 1.5


def draw_spends(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Compound Poisson-gamma spends of mean ``FACTOR x expected`` and variance ∝ mean^POWER.

    Orders ~ Poisson(mean^(2 - POWER) / 10), each of value gamma(6) around the rest: big spenders
    both buy more often and spend more per order, as on the simulated shop.
    """
    mean = FACTOR * expected
    orders_mean = mean ** (2.0 - POWER) / 10.0
    return np.array([rng.gamma(6.0, v / 6.0, n).sum() for v, n in zip(mean / orders_mean, rng.poisson(orders_mean))])


def test_aggregate_scale_recovers_the_planted_factor_with_less_spread_than_the_ratio_of_totals() -> None:
    rng = np.random.default_rng(0)
    expected = rng.gamma(0.2, 100.0, 2000) + 0.5  # skewed expected values, as a model predicts them
    plain, weighted = [], []
    for _ in range(400):
        y = draw_spends(expected, rng)
        plain.append(aggregate_scale(y, expected, 1.0))
        weighted.append(aggregate_scale(y, expected, POWER))
        assert plain[-1] == pytest.approx(y.sum() / expected.sum())  # power 1: the ratio of totals
    assert np.mean(weighted) == pytest.approx(FACTOR, rel=0.01)
    assert np.mean(plain) == pytest.approx(FACTOR, rel=0.01)
    # A few big realised spends sway the ratio of totals; weighed by the variance, they sway the factor less.
    assert np.std(weighted) < 0.93 * np.std(plain), (np.std(weighted), np.std(plain))


def test_aggregate_scale_of_nothing_predicted_is_one() -> None:
    assert aggregate_scale(np.array([3.0, 0.0]), np.zeros(2), 1.3) == 1.0
    assert aggregate_scale(np.array([3.0, 1.0]), np.array([0.0, 2.0]), 1.3) > 0  # a zero prediction stays finite


@pytest.mark.parametrize(("horizon_days", "pooled"), [(14.0, [2, 3, 4]), (21.0, [3, 4]), (35.0, [4])])
def test_the_factor_pools_only_windows_a_model_fitted_before_them_predicts(horizon_days: float, pooled: list[int]) -> None:
    """Weekly cutoffs: a window joins the pool only if some cutoff's label window ends by it."""
    rng = np.random.default_rng(0)
    cutoffs = pd.date_range("2026-03-02", periods=5, freq="7D", tz="UTC")
    cutoff = np.repeat(cutoffs, 400)
    X = pd.DataFrame({"rate": rng.gamma(1.0, 0.5, len(cutoff)), "level": rng.gamma(2.0, 20.0, len(cutoff))})
    y = rng.poisson(X["rate"]) * X["level"]
    model = ValueRegressor(horizon_days, objective="tweedie", n_estimators=40).fit(X, y, cutoff)
    assert model.calibration_cutoffs_ == [cutoffs[k] for k in pooled]
    assert 0.5 < model.scale_ < 2.0
