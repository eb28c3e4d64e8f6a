"""The ``score_and_write_back`` flow: champions score the profiles; predicted traits are written back; the
scoring whose window has just passed is compared with what happened (realized outcomes, to MLflow)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

from cdp.config import Settings, get_settings
from cdp.errors import CdpError, NotFound
from features.read import opened
from flows.runtime import store_task
from flows.train import stored_predictions
from models.predict import record_outcomes, score_prediction
from models.recommend.writeback import write_back_champion


@store_task
def score_one(settings: Settings, key: str, as_of: datetime) -> str:
    with opened(settings) as engine:
        try:
            scored = str(score_prediction(engine, key, as_of=as_of, settings=settings))
        except CdpError as error:  # no champion yet: said in the run; the others are scored
            return f"{key}: not scored: {error.message}"
        try:  # the scoring one window ago can now be judged against what happened
            outcomes = record_outcomes(engine, key, settings=settings, now=as_of)
        except NotFound:
            return scored
        return f"{scored}\nrealized outcomes of the scoring as of {outcomes.as_of:%Y-%m-%d}: predicted " \
               f"{outcomes.predicted:.4f}, realized {outcomes.realized:.4f}"


@store_task
def write_recommendations(settings: Settings) -> str:
    with opened(settings) as engine:
        return str(write_back_champion(engine, settings, now=datetime.now(UTC)))


@flow(name="score_and_write_back")
def score_and_write_back(as_of: datetime | None = None) -> dict[str, str]:
    """Score every prediction with its champion and write recommended items, as of a moment (default: now)."""
    settings, as_of = get_settings(), as_of or datetime.now(UTC)
    return {**{d.key: score_one(settings, d.key, as_of) for d in stored_predictions(settings)},
            "recommendations": write_recommendations(settings)}
