"""Stored predictions scored and written back to profiles; every definition trained and scored in one call.

The plain functions behind ``cdp predictions score`` / ``outcomes`` and the Prefect flows:
:func:`score_prediction` (the champion from MLflow, or the definition's documented fallback
heuristic, scores every eligible profile as of a date; the scores become ``predicted`` traits;
drift goes to MLflow), :func:`record_outcomes` (a past scoring against what happened in its
window, to MLflow) and :func:`train_and_score_all`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from cdp.config import Settings
from cdp.errors import CdpError, NotFound
from cdp.predictions.schemas import PredictionDefinition
from cdp.predictions.service import get_prediction, list_predictions
from cdp.predictions.traits import FALLBACK_PREFIX, ScoredProfiles, write_back
from features import build_scoring_frame
from models.boosting import feature_frame
from models.monitoring import Drift, measure_drift
from models.outcomes import Outcomes, realized_outcomes
from models.schemas import eligibility_of, purchases_of
from models.score import score_frame
from models.tracking import champion_predictor, log_outcomes, log_scoring
from models.train import TrainingResult, fallback_model, train_prediction


class NoChampion(NotFound):
    """A prediction has no trained model to score with, and its definition refuses a heuristic."""

    code = "no_champion"


@dataclass(frozen=True)
class ScoringResult:
    """What a scoring wrote: how many profiles, with which model, and the drift against its training."""

    key: str
    as_of: datetime
    profiles: int
    trait_changes: int
    model_version: str  # a registered version, or ``fallback:<heuristic>``
    drift: Drift | None = None

    @property
    def fallback(self) -> bool:
        return self.model_version.startswith(FALLBACK_PREFIX)

    def __str__(self) -> str:
        model = f"FALLBACK {self.model_version.removeprefix(FALLBACK_PREFIX)} heuristic" if self.fallback \
            else f"model v{self.model_version}"
        line = (f"prediction {self.key!r} scored as of {self.as_of:%Y-%m-%d} with {model}: "
                f"{self.profiles:,} profiles, {self.trait_changes:,} predicted traits written")
        if self.drift is None:
            return line
        shifted = ", ".join(self.drift.shifted) or "none"
        return (f"{line}\nscore PSI {self.drift.score:.3f} (mean {self.drift.score_mean_then:.4f} at training, "
                f"{self.drift.score_mean_now:.4f} now); features with PSI > 0.25: {shifted}")


def score_prediction(
    engine: Engine, key: str, *, as_of: datetime, settings: Settings, now: datetime | None = None,
) -> ScoringResult:
    """Score every profile eligible as of ``as_of`` with the champion and write the ``predicted`` traits.

    Without a champion, a definition whose ``fallback`` is ``heuristic`` is scored by the BTYD /
    repeat-rate heuristic (``K_model_version`` = ``fallback:<name>``); one that refuses raises
    :class:`NoChampion`.
    """
    with engine.connect() as conn:
        definition = get_prediction(conn, key=key).definition
    frame = build_scoring_frame(engine, as_of=as_of, feature_set=definition.feature_set,
                                eligibility=eligibility_of(definition), purchases=purchases_of(definition),
                                backfilled_until=settings.backfilled_until)
    champion = champion_predictor(settings.resolved_mlflow_tracking_uri, key)
    if champion is None and definition.fallback == "refuse":
        raise NoChampion(f"prediction {key!r} has no champion model: train one (`cdp predictions train {key}`); "
                         "a model that does not beat the baselines (its gate) or data that fail the readiness "
                         "report leave none: set fallback to heuristic to score with BTYD instead")
    if frame.empty:
        version = champion.version if champion else f"{FALLBACK_PREFIX}none"
        return ScoringResult(key, as_of, 0, 0, version)
    model = champion.model if champion else fallback_model(frame, definition)
    version = champion.version if champion else f"{FALLBACK_PREFIX}{type(model).__name__}"
    scores = score_frame(model, _fitted_columns(frame, model), task=definition.task)
    score = scores["value" if definition.task == "value" else "probability"].to_numpy()
    drift = measure_drift(champion.reference, feature_frame(frame), score) if champion and champion.reference else None
    scored = ScoredProfiles(scores["profile_id"].to_numpy(), score, scores["percentile"].to_numpy(),
                            scores["decile"].to_numpy(), scores["reasons"].tolist())
    written = write_back(engine, key, definition.task, scored, model_version=version, as_of=as_of,
                         now=now or datetime.now(UTC))
    log_scoring(tracking_uri=settings.resolved_mlflow_tracking_uri, key=key, model_version=version, as_of=as_of,
                profiles=len(scored), drift=drift)
    return ScoringResult(key, as_of, len(scored), written, version, drift)


def record_outcomes(engine: Engine, key: str, *, settings: Settings, now: datetime,
                    as_of: datetime | None = None) -> Outcomes:
    """The realized outcomes of the scoring as of ``as_of`` (default: the latest whose window has passed by
    ``now``), per score decile, logged to the prediction's MLflow experiment (see :mod:`models.outcomes`)."""
    with engine.connect() as conn:
        definition = get_prediction(conn, key=key).definition
    outcomes = realized_outcomes(engine, definition, now=now, as_of=as_of)
    log_outcomes(tracking_uri=settings.resolved_mlflow_tracking_uri, outcomes=outcomes)
    return outcomes


@dataclass(frozen=True)
class PredictionRun:
    """One definition's turn in :func:`train_and_score_all`: what training and scoring gave, or why not."""

    definition: PredictionDefinition
    training: TrainingResult | None = None
    scoring: ScoringResult | None = None
    error: str | None = None


def train_and_score_all(engine: Engine, settings: Settings, as_of: datetime) -> list[PredictionRun]:
    """Train every stored definition as of ``as_of``, then score it; one failing does not stop the others."""
    with engine.connect() as conn:
        definitions = [stored.definition for stored in list_predictions(conn)]
    runs = []
    for definition in definitions:
        training: TrainingResult | None = None
        try:
            training = train_prediction(engine, definition, as_of=as_of, settings=settings)
            runs.append(PredictionRun(definition, training,
                                      score_prediction(engine, definition.key, as_of=as_of, settings=settings)))
        except CdpError as error:  # not ready, no champion: said in the run, the next definition goes on
            runs.append(PredictionRun(definition, training, error=error.message))
    return runs


def _fitted_columns(frame: pd.DataFrame, model: Any) -> pd.DataFrame:
    """``profile_id`` and the columns the model was fitted on; a category unseen today is missing (NaN)."""
    names = getattr(model, "feature_names_in_", None)
    return frame if names is None else frame.reindex(columns=["profile_id", *names])
