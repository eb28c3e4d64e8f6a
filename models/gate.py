"""The promotion gate: a candidate becomes ``champion`` only if it beats the baselines and the champion."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from cdp.predictions.schemas import GateRule

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece", "mae", "rmse"})


class Gate(GateRule):
    """What a candidate must beat, on which held-out metric: a prediction definition's ``gate``
    (:class:`cdp.predictions.schemas.GateRule`: ``metric``, ``min_improvement``,
    ``beat_baselines``, ``beat_champion``), and which columns of the metrics table never count.

    Parameters
    ----------
    not_opponents : frozenset of str
        Columns of the metrics table shown beside the model but not gating it. By default the
        single-cutoff GBM: a competing model rather than a floor, and refusing a candidate that
        merely ties with it would leave no model to score with at all.
    """

    not_opponents: frozenset[str] = frozenset({"single_cutoff_gbm"})

    def metric_for(self, task: str) -> str:
        return self.metric or ("normalized_gini" if task == "value" else "roc_auc")


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    candidate: float


def decide(gate: Gate, task: str, metrics: pd.DataFrame, champion: float | None, *, model: str = "model") -> GateDecision:
    """Judge the ``model`` column of a side-by-side metrics table against the others and the champion.

    ``champion`` is the current champion's value of the same metric on its own held-out cutoff
    (``None`` when there is no champion yet).
    """
    metric = gate.metric_for(task)
    if metric not in metrics.index:
        raise ValueError(f"the gate's metric {metric!r} is not among {', '.join(metrics.index)}")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    candidate = float(metrics.at[metric, model])

    def beats(other: float) -> bool:
        return sign * (candidate - other) > gate.min_improvement

    if math.isnan(candidate):
        return GateDecision(False, f"{metric} is undefined on the held-out cutoff", metric, candidate)
    baselines = [name for name in metrics.columns if name != model and name not in gate.not_opponents]
    opponents = {name: float(metrics.at[metric, name]) for name in baselines} if gate.beat_baselines else {}
    if gate.beat_champion and champion is not None:
        opponents["champion"] = champion
    lost = {name: value for name, value in opponents.items() if not math.isnan(value) and not beats(value)}
    if lost:
        against = ", ".join(f"{name} {value:.4f}" for name, value in lost.items())
        return GateDecision(False, f"{metric} {candidate:.4f} does not beat {against} by {gate.min_improvement:g}", metric, candidate)
    beaten = ", ".join(f"{name} {value:.4f}" for name, value in opponents.items()) or "no opponent"
    return GateDecision(True, f"{metric} {candidate:.4f} beats {beaten}", metric, candidate)
