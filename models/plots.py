"""The model card's plots from an evaluation: matplotlib figures, no global pyplot state."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from models.evaluate import MODEL, Evaluation
from models.metrics import calibration_table, gains_table


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, object]:
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    ax = figure.subplots()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return figure, ax


def roc_figure(evaluation: Evaluation) -> Figure:
    figure, ax = _axes("ROC on the held-out cutoff", "false positive rate", "true positive rate")
    y = evaluation.holdout["label"].to_numpy()
    for name in evaluation.predictors:
        fpr, tpr, _ = roc_curve(y, evaluation.holdout[name])
        ax.plot(fpr, tpr, label=f"{name} (AUC {evaluation.metrics.at['roc_auc', name]:.3f})", lw=2 if name == MODEL else 1)
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    ax.legend(loc="lower right")
    return figure


def calibration_figure(evaluation: Evaluation) -> Figure:
    figure, ax = _axes("Calibration on the held-out cutoff", "mean predicted probability", "observed rate")
    y = evaluation.holdout["label"]
    for name in evaluation.predictors:
        table = calibration_table(y, evaluation.holdout[name].clip(0, 1))
        ax.plot(table["predicted"], table["observed"], marker="o", label=name, lw=2 if name == MODEL else 1)
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    ax.legend(loc="upper left")
    return figure


def gains_figure(evaluation: Evaluation) -> Figure:
    figure, ax = _axes("Cumulative gain by decile (1 = highest scores)", "decile", "share of the outcome captured")
    y = evaluation.holdout["label"]
    for name in evaluation.predictors:
        gains = gains_table(y, evaluation.holdout[name])
        ax.plot(gains.index, gains["cumulative_gain"], marker="o", label=name, lw=2 if name == MODEL else 1)
    ax.plot([1, 10], [0.1, 1.0], color="grey", ls=":")
    ax.legend(loc="lower right")
    return figure


def value_by_decile_figure(evaluation: Evaluation) -> Figure:
    figure, ax = _axes("Value by predicted decile", "decile of the model's prediction", "mean value")
    holdout = evaluation.holdout
    actual = gains_table(holdout["label"], holdout[MODEL])["mean"]
    predicted = gains_table(holdout[MODEL], holdout[MODEL])["mean"]
    width = 0.4
    ax.bar(actual.index - width / 2, actual, width, label="realised")
    ax.bar(predicted.index + width / 2, predicted, width, label="predicted")
    ax.legend()
    return figure


def importance_figure(importance: pd.Series, top: int = 20) -> Figure:
    """Horizontal bars of the ``top`` largest importances (e.g. LightGBM's total gain)."""
    shown = importance.head(top)[::-1]
    figure, ax = _axes("Feature importance (total gain)", "gain", "")
    ax.barh(np.arange(len(shown)), shown.to_numpy())
    ax.set_yticks(np.arange(len(shown)), shown.index)
    return figure


def figures(evaluation: Evaluation, importance: pd.Series | None) -> dict[str, Figure]:
    """Every plot of the model card by file name: ROC, calibration and gains for probabilities,
    gains and value by decile for values, and the feature importance (if the model has one)."""
    if evaluation.task == "value":
        plots = {"gains.png": gains_figure(evaluation), "value_by_decile.png": value_by_decile_figure(evaluation)}
    else:
        plots = {"roc.png": roc_figure(evaluation), "calibration.png": calibration_figure(evaluation),
                 "gains.png": gains_figure(evaluation)}
    return plots if importance is None else {**plots, "feature_importance.png": importance_figure(importance)}
