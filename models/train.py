"""Train a prediction end to end: training frame, readiness, held-out evaluation, refit, MLflow.

:func:`train_prediction` is the plain function behind ``cdp predictions train`` and the Prefect
``train`` flow; both pass the store's engine, a definition, the ``as_of`` date (backtests give
a past one) and the settings (the MLflow tracking URI comes from them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from cdp.config import Settings
from cdp.jobs import ProgressReport, no_progress
from features import ReadinessReport, Requirements, build_training_frame, readiness_report
from models.baselines import BtydBaseline, RepeatRateBaseline
from models.boosting import feature_frame, latest_cutoff
from models.custom import custom_model
from models.evaluate import Evaluation, evaluate, make_model, predicted
from models.gate import Gate, GateDecision
from models.monitoring import drift_reference
from models.plots import figures
from models.schemas import PredictionDefinition, eligibility_of, label_of, purchases_of
from models.tracking import track_training


@dataclass(frozen=True)
class TrainingResult:
    """What a training produced.

    Attributes
    ----------
    model : fitted predictor
        Refitted on every cutoff (calibrated on the latest), or with ``fallback`` the BTYD /
        repeat-rate heuristic fitted without labels.
    fallback : bool
        The readiness report failed and the definition allows a heuristic: no LightGBM model,
        no metrics, nothing registered; predicted traits must say so.
    evaluation : Evaluation or None
        The held-out comparison with the baselines (``None`` for a fallback).
    """

    definition: PredictionDefinition
    as_of: datetime
    cutoffs: tuple[datetime, ...]
    readiness: ReadinessReport
    model: Any
    fallback: bool = False
    evaluation: Evaluation | None = None
    decision: GateDecision | None = None
    run_id: str | None = None
    model_version: str | None = None
    training_set: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> pd.DataFrame | None:
        """Metric rows x predictor columns (model first, then the baselines) on the held-out cutoff."""
        return None if self.evaluation is None else self.evaluation.metrics

    def __str__(self) -> str:
        head = f"prediction {self.definition.key!r} ({self.definition.kind}, {self.definition.window_days} days) as of {self.as_of:%Y-%m-%d}"
        if self.fallback:
            return f"{head}: FALLBACK {type(self.model).__name__} heuristic\n{self.readiness}"
        lines = [head, *(f"warning: {check.message}" for check in self.readiness.warnings),
                 self.evaluation.metrics.to_string(float_format=lambda v: f"{v:.4f}")]  # type: ignore[union-attr]
        if self.decision is not None:
            lines.append(f"gate: {'promoted' if self.decision.promote else 'refused'} v{self.model_version}: {self.decision.reason}")
        return "\n".join(lines)


def training_readiness(
    engine: Engine, definition: PredictionDefinition, *, as_of: datetime, settings: Settings,
    requirements: Requirements = Requirements(), progress: ProgressReport = no_progress,
) -> tuple[list[datetime], pd.DataFrame, ReadinessReport]:
    """The cutoffs, training frame and readiness report a training as of ``as_of`` would use (the check a
    new definition gets before it is saved, and the first step of :func:`train_prediction`); ``progress``
    hears of each of its two steps (as a background job's does, :mod:`cdp.jobs`).

    Raises ``features.NotReady`` when no profile is eligible at any cutoff.
    """
    cutoffs = definition.cutoffs(as_of)
    label = label_of(definition)
    progress(0, 2, f"building the training frame: features and outcomes at {len(cutoffs)} past dates")
    frame = build_training_frame(
        engine, cutoffs=cutoffs, horizon=definition.horizon, label=label, feature_set=definition.feature_set,
        eligibility=eligibility_of(definition), purchases=purchases_of(definition),
        backfilled_until=settings.backfilled_until,
    )
    progress(1, 2, f"checking the {len(frame):,} rows of the training frame")
    report = readiness_report(engine, frame, horizon=definition.horizon, label=label, requirements=requirements,
                              backfilled_until=settings.backfilled_until)
    return cutoffs, frame, report


def train_prediction(
    engine: Engine,
    definition: PredictionDefinition,
    *,
    as_of: datetime,
    settings: Settings,
    gate: Gate | None = None,
    requirements: Requirements = Requirements(),
    track: bool = True,
    estimator: Any | None = None,
) -> TrainingResult:
    """Build the training frame as of ``as_of``, check it, evaluate out of time, refit, track.

    Parameters
    ----------
    engine : Engine
        The store.
    definition : PredictionDefinition
    as_of : datetime
        The training date (timezone-aware): the last label window ends here.
    settings : Settings
        ``resolved_mlflow_tracking_uri`` is where runs and models go; ``backfilled_until`` says which
        history counts from when it happened (see :func:`features.build_training_frame`).
    gate : Gate, optional
        What the model must beat to become ``champion``; default the definition's ``gate``.
    requirements : Requirements
        Thresholds of the readiness report.
    track : bool
        Log to MLflow and register (off for a dry run).
    estimator : scikit-learn estimator, optional
        Bring your own model: trained instead of LightGBM (``fit(X, y)`` and ``predict_proba``, or
        ``predict`` for ``ltv``; cloned at each fit, see :mod:`models.custom`), evaluated beside the
        same baselines, registered and gated the same way. No per-profile reasons are written for it.

    Raises
    ------
    features.NotReady
        The readiness report failed and the definition's ``fallback`` is ``refuse``.
    """
    cutoffs, frame, report = training_readiness(engine, definition, as_of=as_of, settings=settings,
                                                requirements=requirements)
    training_set = describe_training_set(definition, frame, cutoffs)
    common = {"definition": definition, "as_of": as_of, "cutoffs": tuple(cutoffs), "readiness": report,
              "training_set": training_set}
    if not report.ok:
        if definition.fallback == "refuse":
            report.raise_if_not_ready()
        return TrainingResult(model=fallback_model(frame, definition), fallback=True, **common)

    horizon_days = float(definition.window_days)

    def new_model() -> Any:
        return make_model(definition.task, horizon_days) if estimator is None else custom_model(definition.task, estimator)

    evaluation = evaluate(frame, task=definition.task, horizon_days=horizon_days, model=new_model())
    X = feature_frame(frame)
    final = new_model().fit(X, frame["label"], frame["cutoff"])
    if not track:
        return TrainingResult(model=final, evaluation=evaluation, **common)
    tracked = track_training(
        tracking_uri=settings.resolved_mlflow_tracking_uri,
        key=definition.key,
        task=definition.task,
        params=_params(definition, final, cutoffs),
        metrics=evaluation.metrics,
        segments=evaluation.segments,
        figures=figures(evaluation, final.feature_importance() if hasattr(final, "feature_importance") else None),
        training_set=training_set,
        model=final,
        input_example=X.head(5),
        gate=gate or Gate(**dict(definition.gate)),
        reference=_drift_reference(final, X, frame["cutoff"]),
    )
    return TrainingResult(model=final, evaluation=evaluation, decision=tracked.decision, run_id=tracked.run_id,
                          model_version=tracked.model_version, **common)


def fallback_model(frame: pd.DataFrame, definition: PredictionDefinition) -> BtydBaseline | RepeatRateBaseline:
    """A heuristic that needs no labels: BTYD on the purchase histories, else the naive repeat rate."""
    X = feature_frame(frame)
    try:
        return BtydBaseline(definition.task, definition.window_days).fit(X)
    except ValueError:  # too few buyers to fit BG/NBD
        return RepeatRateBaseline(definition.task, definition.window_days).fit(X)


def describe_training_set(definition: PredictionDefinition, frame: pd.DataFrame, cutoffs: list[datetime]) -> dict[str, Any]:
    """The training frame's definition and shape, as JSON: enough to rebuild it and to read it."""
    by_cutoff = frame.groupby("cutoff")["label"]
    return {
        "definition": definition.model_dump(mode="json"),
        "label": label_of(definition).describe(),
        "eligibility": [rule.describe() for rule in eligibility_of(definition)],
        "cutoffs": [c.isoformat() for c in cutoffs],
        "roles": ["train"] * (len(cutoffs) - 2) + ["calibrate", "holdout"],
        "features": list(feature_frame(frame).columns),
        "rows": int(len(frame)),
        "rows_per_cutoff": {str(c.isoformat()): int(n) for c, n in by_cutoff.size().items()},
        "label_mean_per_cutoff": {str(c.isoformat()): float(m) for c, m in by_cutoff.mean().items()},
    }


def _drift_reference(model: Any, X: pd.DataFrame, cutoff: pd.Series) -> dict[str, Any]:
    """Features and scores on the latest cutoff: what each scoring's drift is measured against."""
    latest = latest_cutoff(cutoff)
    return drift_reference(X[latest], predicted(model, X[latest]))


def _params(definition: PredictionDefinition, model: Any, cutoffs: list[datetime]) -> dict[str, Any]:
    hyper = {f"model.{k}": v for k, v in vars(model).items() if not k.endswith("_")}
    chosen = {"model.objective_chosen": model.objective_} if hasattr(model, "objective_") else {}
    return {
        **{f"definition.{k}": v for k, v in definition.model_dump(mode="json").items()},
        **hyper,
        **chosen,
        "model.class": type(model).__name__,
        "cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in cutoffs),
    }
