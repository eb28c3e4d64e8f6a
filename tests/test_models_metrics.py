"""Metrics against hand-computed answers, and reasons in words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.metrics import (
    by_segment,
    calibration_table,
    classification_metrics,
    expected_calibration_error,
    gains_table,
    normalized_gini,
    side_by_side,
    top_decile_share,
    value_metrics,
)
from models.reasons import phrase, top_reasons


def test_classification_metrics_of_perfect_random_and_calibrated_scores() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)  # p is the true probability: calibrated
    calibrated = classification_metrics(y, p)
    assert calibrated.ece < 0.02 and 0.8 < calibrated.roc_auc < 0.86
    assert calibrated.brier == pytest.approx(np.mean((y - p) ** 2))
    overconfident = classification_metrics(y, np.clip(1.6 * (p - 0.5) + 0.5, 0, 1))
    assert overconfident.ece > 0.07 and overconfident.log_loss > calibrated.log_loss
    assert overconfident.roc_auc == pytest.approx(calibrated.roc_auc, abs=0.005)  # ranking unchanged
    perfect = classification_metrics(y, y.astype(float))
    assert perfect.roc_auc == 1.0 and perfect.pr_auc == 1.0 and perfect.top_decile_lift == pytest.approx(1 / y.mean())
    coin = classification_metrics(y, rng.uniform(0, 1, y.size))
    assert abs(coin.roc_auc - 0.5) < 0.02
    assert np.isnan(classification_metrics(np.zeros(5), np.full(5, 0.1)).roc_auc)


def test_gains_and_calibration_tables() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0] * 10)
    score = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1, 0.2] * 10)
    gains = gains_table(y, score)
    assert list(gains.index) == list(range(1, 11)) and (gains["n"] == 10).all()
    assert gains.loc[1, "mean"] == 1.0 and gains.loc[2, "mean"] == 1.0 and gains.loc[3, "total"] == 0
    assert gains.loc[1, "lift"] == 5.0 and gains.loc[2, "cumulative_gain"] == 1.0
    table = calibration_table(y, score, bins=5)
    assert table["n"].sum() == 100 and table["observed"].iloc[-1] == 1.0 and table["observed"].iloc[0] == 0.0
    assert expected_calibration_error(y, score, bins=5) == pytest.approx(
        np.average(np.abs(table["predicted"] - table["observed"]), weights=table["n"]))


def test_value_metrics() -> None:
    y = np.array([0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 50.0, 0.0, 0.0, 40.0])
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, -y) < -0.5
    assert normalized_gini(y, np.ones_like(y)) == pytest.approx(0.0)  # all tied: as good as random
    assert top_decile_share(y, y) == 0.5 and top_decile_share(y, -y) == 0.0
    metrics = value_metrics(y, np.full(10, 12.0))
    assert metrics.aggregate_error == pytest.approx(0.2) and metrics.mae == pytest.approx(np.mean(np.abs(y - 12)))
    assert metrics.rmse == pytest.approx(np.sqrt(np.mean((y - 12) ** 2))) and np.isnan(metrics.spearman)
    segments = by_segment(y, y * 1.1, np.array(["new"] * 5 + ["returning"] * 5), value_metrics)
    assert list(segments.index) == ["new", "returning"]
    assert segments.loc["new", "n"] == 5 and segments.loc["returning", "aggregate_error"] == pytest.approx(0.1)
    table = side_by_side({"model": value_metrics(y, y), "naive": value_metrics(y, np.full(10, 10.0))})
    assert list(table.columns) == ["model", "naive"] and table.at["mae", "model"] == 0.0
    with pytest.raises(ValueError, match="same length"):
        value_metrics(y, y[:3])


def test_phrases_read_the_feature_values() -> None:
    assert phrase("recency_days", 64.2) == "no purchase in 64 days"
    assert phrase("recency_days", np.nan) == "never purchased"
    assert phrase("purchases_30d", 3) == "3 orders in the last 30 days"
    assert phrase("purchases_7d", 1) == "1 order in the last 7 days"
    assert phrase("category_share__home_kitchen", 0.5) == "50% of items bought in home kitchen"
    assert phrase("identify_30d", 2) == "identify calls in the last 30 days: 2"  # the description, generically
    assert phrase("trait__plan", "pro") == "trait plan: pro"  # not registered: the name in words


def test_top_reasons_are_the_largest_contributions() -> None:
    contributions = pd.DataFrame({"recency_days": [0.9, 0.0], "purchases_30d": [-0.5, 0.2], "monetary": [0.1, -0.7],
                                  "frequency": [0.05, 0.0]})
    values = pd.DataFrame({"recency_days": [64.0, 2.0], "purchases_30d": [0, 3], "monetary": [10.0, 250.0],
                           "frequency": [1, 4]}, index=[7, 9])
    assert top_reasons(contributions, values) == [
        ["no purchase in 64 days", "0 orders in the last 30 days", "10 spent in total"],
        ["250 spent in total", "3 orders in the last 30 days"],  # zero contributions are no reason
    ]


def test_normalized_gini_counts_tied_predictions_in_every_order() -> None:
    rng = np.random.default_rng(3)
    y = rng.gamma(0.5, 20.0, 300) * (rng.random(300) < 0.3)
    pred = rng.integers(0, 6, 300).astype(float) + (y > 0)  # heavy ties, as days since the last order have

    def in_row_order(y: np.ndarray, pred: np.ndarray) -> float:  # ties broken by row order
        curve = np.cumsum(y[np.lexsort((np.arange(len(y)), -pred))]) / y.sum()
        return curve.mean() - (len(y) + 1) / (2 * len(y))

    gini = normalized_gini(y, pred)
    orders = [rng.permutation(len(y)) for _ in range(3000)]
    assert all(normalized_gini(y[order], pred[order]) == pytest.approx(gini) for order in orders[:20])
    expected = np.mean([in_row_order(y[order], pred[order]) for order in orders]) / in_row_order(y, y)
    assert gini == pytest.approx(expected, abs=0.003)
    assert 0.1 < gini < 0.9
