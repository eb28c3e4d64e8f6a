"""Honest, out-of-time evaluation of a predictor against the baselines, on the same rows.

The latest cutoff of a training frame is held out; the model (which calibrates on its own
latest cutoff, the one before, or for values on its latest few) and the baselines are fitted on
the earlier cutoffs and all predict the held-out one. Nothing fitted has seen the held-out label window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.baselines import baselines
from models.boosting import feature_frame, latest_cutoff
from models.classifier import PropensityClassifier
from models.metrics import (
    ClassificationMetrics,
    ValueMetrics,
    by_segment,
    classification_metrics,
    side_by_side,
    value_metrics,
)
from models.value import ValueRegressor

MODEL = "model"


def make_model(task: str, horizon_days: float, **params: object) -> PropensityClassifier | ValueRegressor:
    """The LightGBM predictor of a task (``churn``, ``purchase``, ``goal`` or ``value``)."""
    if task == "value":
        return ValueRegressor(horizon_days, **params)  # type: ignore[arg-type]
    return PropensityClassifier(horizon_days, **params)  # type: ignore[arg-type]


def predicted(model: object, X: pd.DataFrame) -> np.ndarray:
    """One number per row: P(label = 1) of a classifier, the prediction of anything else."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]  # type: ignore[attr-defined]
    return model.predict(X)  # type: ignore[attr-defined]


def _score(task: str, y: np.ndarray, prediction: np.ndarray) -> ClassificationMetrics | ValueMetrics:
    return value_metrics(y, prediction) if task == "value" else classification_metrics(y, prediction)


def customer_segment(frame: pd.DataFrame) -> np.ndarray:
    """``returning`` for profiles with two purchases or more before the cutoff, else ``new``."""
    if "frequency" not in frame:
        return np.full(len(frame), "all", dtype=object)
    return np.where(frame["frequency"].to_numpy() >= 2, "returning", "new").astype(object)


@dataclass(frozen=True)
class Evaluation:
    """The held-out comparison.

    Attributes
    ----------
    task : str
    model : PropensityClassifier or ValueRegressor
        Fitted on every cutoff but the held-out one.
    holdout : pandas.DataFrame
        The held-out rows: ``profile_id``, ``cutoff``, ``label``, ``segment``, and one column
        of predictions per predictor (``model``, ``recency``, ``repeat_rate``, ``btyd``,
        ``single_cutoff_gbm``).
    metrics : pandas.DataFrame
        One row per metric, one column per predictor (:func:`models.metrics.side_by_side`).
    segments : pandas.DataFrame
        Index ``(predictor, segment)``, one column per metric.
    """

    task: str
    model: PropensityClassifier | ValueRegressor
    holdout: pd.DataFrame
    metrics: pd.DataFrame
    segments: pd.DataFrame

    @property
    def predictors(self) -> list[str]:
        return list(self.metrics.columns)


def evaluate(
    frame: pd.DataFrame, *, task: str, horizon_days: float, model: PropensityClassifier | ValueRegressor | None = None
) -> Evaluation:
    """Fit ``model`` (default :func:`make_model`) and the baselines on all cutoffs but the latest; compare on it.

    Parameters
    ----------
    frame : pandas.DataFrame
        A training frame: ``profile_id``, ``cutoff``, feature columns, ``label``; at least three
        cutoffs (fit, calibrate, hold out).
    task : {"churn", "purchase", "goal", "value"}
    horizon_days : float
    model : optional
        An unfitted predictor with ``fit(X, y, cutoff)``.
    """
    latest = latest_cutoff(frame["cutoff"])
    earlier, held = frame[~latest], frame[latest]
    X, X_held = feature_frame(earlier), feature_frame(held)
    model = model if model is not None else make_model(task, horizon_days)
    model.fit(X, earlier["label"], earlier["cutoff"])
    predictions = {MODEL: predicted(model, X_held)}
    for name, baseline in baselines(task, horizon_days).items():
        predictions[name] = baseline.fit(X, earlier["label"], earlier["cutoff"]).predict(X_held)
    y = held["label"].to_numpy(float)
    holdout = held[["profile_id", "cutoff", "label"]].assign(segment=customer_segment(held), **predictions)
    table = side_by_side({name: _score(task, y, p) for name, p in predictions.items()})
    segments = pd.concat(
        {name: by_segment(y, p, holdout["segment"], lambda a, b: _score(task, a, b)) for name, p in predictions.items()},
        names=["predictor"],
    )
    return Evaluation(task=task, model=model, holdout=holdout.reset_index(drop=True), metrics=table, segments=segments)
