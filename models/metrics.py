"""Evaluation: classification and value metrics, gains, calibration, side-by-side tables.

Plain functions over arrays; results are frozen dataclasses (one number per field, so they log
to MLflow as they are) or frames (one row per decile / bin / segment).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

DECILES = 10
_EPS = 1e-6


@dataclass(frozen=True)
class ClassificationMetrics:
    """How well probabilities rank and how well they are calibrated (``nan`` if one class only)."""

    n: int
    positive_rate: float
    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float
    ece: float
    top_decile_lift: float


@dataclass(frozen=True)
class ValueMetrics:
    """Errors, ranking and aggregate bias of value predictions."""

    n: int
    mean_actual: float
    mae: float
    rmse: float
    normalized_gini: float
    spearman: float
    top_decile_share: float
    aggregate_error: float


def _checked(y: np.ndarray | pd.Series, pred: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    if y.shape != pred.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and predictions {pred.shape} must be 1-d of the same length")
    if len(y) == 0 or np.isnan(pred).any():
        raise ValueError("predictions must be non-empty and finite")
    return y, pred


def classification_metrics(y: np.ndarray | pd.Series, probability: np.ndarray | pd.Series) -> ClassificationMetrics:
    """Metrics of probabilities ``probability`` against 0/1 labels ``y``."""
    y, p = _checked(y, probability)
    both = 0 < y.sum() < len(y)
    clipped = np.clip(p, _EPS, 1 - _EPS)
    return ClassificationMetrics(
        n=len(y),
        positive_rate=float(y.mean()),
        roc_auc=float(roc_auc_score(y, p)) if both else np.nan,
        pr_auc=float(average_precision_score(y, p)) if both else np.nan,
        log_loss=float(log_loss(y, clipped, labels=[0, 1])),
        brier=float(brier_score_loss(y, p)),
        ece=expected_calibration_error(y, p),
        top_decile_lift=float(gains_table(y, p)["lift"].iloc[0]) if y.sum() > 0 else np.nan,
    )


def value_metrics(y: np.ndarray | pd.Series, predicted: np.ndarray | pd.Series) -> ValueMetrics:
    """Metrics of predicted values against realised values ``y`` (zeros included)."""
    y, pred = _checked(y, predicted)
    return ValueMetrics(
        n=len(y),
        mean_actual=float(y.mean()),
        mae=float(np.mean(np.abs(y - pred))),
        rmse=float(np.sqrt(np.mean((y - pred) ** 2))),
        normalized_gini=normalized_gini(y, pred),
        spearman=float(spearmanr(y, pred).statistic) if np.ptp(y) > 0 and np.ptp(pred) > 0 else np.nan,
        top_decile_share=top_decile_share(y, pred),
        aggregate_error=float(pred.sum() / y.sum() - 1.0) if y.sum() > 0 else np.nan,
    )


def _gini(y: np.ndarray, pred: np.ndarray) -> float:
    """The area between the Lorenz curve of ``y`` sorted by ``pred`` (highest first) and the diagonal.

    Rows of equal prediction count in every order at once (the expected area over their random
    orders: the curve runs straight across them): broken in row order, a recency baseline's ties
    went to whichever customers the store happened to list first, and its score changed with the
    order profiles were created in (0.4638 and 0.4828 in two runs of ``make demo`` on the same data).
    """
    n = len(y)
    order = np.argsort(-pred, kind="stable")
    _, starts, sizes = np.unique(-pred[order], return_index=True, return_counts=True)
    totals = np.add.reduceat(y[order], starts) / y.sum()
    before = np.cumsum(totals) - totals  # the curve's height where each group of ties starts
    # Over a group of k ties holding t, the expected heights at its k positions sum to k * before + t (k + 1) / 2.
    area = (sizes * before + totals * (sizes + 1) / 2).sum()
    return float(area / n - (n + 1) / (2 * n))


def normalized_gini(y: np.ndarray | pd.Series, predicted: np.ndarray | pd.Series) -> float:
    """Gini of the ranking by ``predicted`` over the Gini of the perfect ranking (1 = perfect, 0 = random)."""
    y, pred = _checked(y, predicted)
    if y.sum() <= 0:
        return np.nan
    return _gini(y, pred) / _gini(y, y)


def top_decile_share(y: np.ndarray | pd.Series, predicted: np.ndarray | pd.Series) -> float:
    """Share of the realised total held by the 10 % ranked highest."""
    y, pred = _checked(y, predicted)
    top = np.argsort(-pred, kind="stable")[: max(1, len(y) // DECILES)]
    return float(y[top].sum() / y.sum()) if y.sum() > 0 else np.nan


def _deciles(score: np.ndarray) -> np.ndarray:
    """Decile 1 = the 10 % highest scores; ties broken by position so bins are equal-sized."""
    rank = np.empty(len(score), dtype=int)
    rank[np.argsort(-score, kind="stable")] = np.arange(len(score))
    return rank * DECILES // len(score) + 1


def gains_table(y: np.ndarray | pd.Series, score: np.ndarray | pd.Series) -> pd.DataFrame:
    """Per decile of ``score`` (1 = highest): rows, outcome, its mean, lift and cumulative gain.

    Returns
    -------
    pandas.DataFrame
        Index ``decile`` (1-10); columns ``n``, ``total`` (sum of ``y``), ``mean``, ``lift``
        (mean over the overall mean), ``cumulative_gain`` (share of the total in deciles 1..d).
        Works for 0/1 labels (gain = share of positives) and values alike.
    """
    y, score = _checked(y, score)
    frame = pd.DataFrame({"y": y, "decile": _deciles(score)}).groupby("decile")["y"].agg(n="size", total="sum", mean="mean")
    overall = y.mean()
    frame["lift"] = frame["mean"] / overall if overall > 0 else np.nan
    frame["cumulative_gain"] = frame["total"].cumsum() / y.sum() if y.sum() > 0 else np.nan
    return frame


def calibration_table(y: np.ndarray | pd.Series, probability: np.ndarray | pd.Series, bins: int = 10) -> pd.DataFrame:
    """Observed rate against mean predicted probability in equal-count bins of the prediction.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin, lowest predictions first: ``n``, ``predicted`` (mean
        probability), ``observed`` (share of positives).
    """
    y, p = _checked(y, probability)
    order = np.argsort(p, kind="stable")
    bin_of = np.empty(len(p), dtype=int)
    bin_of[order] = np.arange(len(p)) * bins // len(p)
    frame = pd.DataFrame({"y": y, "p": p, "bin": bin_of}).groupby("bin")
    return pd.DataFrame({"n": frame.size(), "predicted": frame["p"].mean(), "observed": frame["y"].mean()})


def expected_calibration_error(y: np.ndarray | pd.Series, probability: np.ndarray | pd.Series, bins: int = 10) -> float:
    """Mean absolute gap between predicted and observed rates over equal-count bins, weighted by size."""
    table = calibration_table(y, probability, bins)
    return float(np.average(np.abs(table["predicted"] - table["observed"]), weights=table["n"]))


def by_segment(
    y: np.ndarray | pd.Series,
    predicted: np.ndarray | pd.Series,
    segments: np.ndarray | pd.Series,
    metrics: Callable[[np.ndarray, np.ndarray], ClassificationMetrics | ValueMetrics],
) -> pd.DataFrame:
    """``metrics`` per segment label (e.g. new / returning), one row each, index ``segment``."""
    y, pred = _checked(y, predicted)
    segments = np.asarray(segments)
    rows = {str(s): asdict(metrics(y[segments == s], pred[segments == s])) for s in pd.unique(segments)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("segment").sort_index()


def side_by_side(results: Mapping[str, ClassificationMetrics | ValueMetrics]) -> pd.DataFrame:
    """One column per model or baseline, one row per metric, in the order given."""
    return pd.DataFrame({name: asdict(result) for name, result in results.items()})
