"""Drift at each scoring: PSI of every feature and of the score, against the training's reference bins.

At training the reference is summarized as decile bins (edges and shares, plus the share missing)
of each numeric feature and of the model's scores on the latest cutoff; at scoring the same
bins are counted on today's frame. PSI = sum over bins of (now - then) x ln(now / then); above
0.25 a feature's distribution has moved enough to look at (the usual rule of thumb).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

BINS = 10
# An empty bin would make PSI infinite: shares are floored at this before the logarithm.
FLOOR = 1e-4
SHIFTED = 0.25


def reference_bins(values: np.ndarray | pd.Series, bins: int = BINS) -> dict[str, Any]:
    """Quantile bin edges of ``values`` and the share of values in each bin, and the share missing."""
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.array([])
    return {"edges": edges.tolist(), "shares": _shares(values, edges).tolist()}


def psi(reference: Mapping[str, Any], values: np.ndarray | pd.Series) -> float:
    """Population stability index of ``values`` against a :func:`reference_bins` summary."""
    then = np.maximum(np.asarray(reference["shares"], dtype=float), FLOOR)
    now = np.maximum(_shares(np.asarray(values, dtype=float), np.asarray(reference["edges"], dtype=float)), FLOOR)
    return float(np.sum((now - then) * np.log(now / then)))


def drift_reference(X: pd.DataFrame, scores: np.ndarray) -> dict[str, Any]:
    """The reference of a training: bins of every numeric feature of ``X`` and of the model's ``scores``."""
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])]
    return {"features": {c: reference_bins(X[c]) for c in numeric}, "score": reference_bins(scores),
            "score_mean": float(np.mean(scores))}


@dataclass(frozen=True)
class Drift:
    """PSI per feature (largest first), of the score, and the mean score then and now."""

    features: dict[str, float]
    score: float
    score_mean_then: float
    score_mean_now: float

    @property
    def shifted(self) -> list[str]:
        return [name for name, value in self.features.items() if value > SHIFTED]

    def metrics(self) -> dict[str, float]:
        """Flat, for MLflow: ``psi.<feature>``, ``score.psi``, ``score.mean``, ``score.mean_training``."""
        return {**{f"psi.{name}": value for name, value in self.features.items()}, "score.psi": self.score,
                "score.mean": self.score_mean_now, "score.mean_training": self.score_mean_then}


def measure_drift(reference: Mapping[str, Any], X: pd.DataFrame, scores: np.ndarray) -> Drift:
    """Today's frame and scores against a training's :func:`drift_reference`."""
    features = {name: psi(bins, X[name]) for name, bins in reference["features"].items() if name in X.columns}
    ordered = dict(sorted(features.items(), key=lambda item: -item[1]))
    return Drift(ordered, psi(reference["score"], scores), float(reference["score_mean"]), float(np.mean(scores)))


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the bins cut at ``edges``, then the share missing (NaN) last."""
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1)
    total = max(len(values), 1)
    return np.append(counts, missing.sum()) / total
