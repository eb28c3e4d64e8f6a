"""The ``train`` flow: every stored prediction and the recommender, trained as of a moment.

Each prediction is its own task, so one that is not ready (or fails) is reported and the others
still train; MLflow's gate decides which trainings become champions.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prefect import flow, get_run_logger

from cdp.config import Settings, get_settings
from cdp.errors import CdpError
from cdp.predictions.schemas import PredictionDefinition
from cdp.predictions.service import list_predictions
from features.read import opened
from flows.runtime import store_task
from models.recommend.train import train_recommender
from models.train import train_prediction


def stored_predictions(settings: Settings) -> list[PredictionDefinition]:
    """The newest version of every prediction definition in the store."""
    with opened(settings) as engine, engine.connect() as conn:
        return [stored.definition for stored in list_predictions(conn)]


@store_task
def train_one(settings: Settings, definition: PredictionDefinition, as_of: datetime) -> str:
    started = time.perf_counter()
    with opened(settings) as engine:
        try:
            result = train_prediction(engine, definition, as_of=as_of, settings=settings)
        except CdpError as error:  # not ready: said in the run; the other predictions go on
            return f"{definition.key}: not trained: {error.message}"
    get_run_logger().info("%s trained in %.1f s", definition.key, time.perf_counter() - started)
    return str(result)


@store_task
def train_recommendations(settings: Settings, as_of: datetime) -> str:
    with opened(settings) as engine:
        try:
            return str(train_recommender(engine, settings, as_of=as_of))
        except ValueError as error:  # no interactions yet
            return f"recommender: not trained: {error}"


@flow(name="train")
def train(as_of: datetime | None = None) -> dict[str, str]:
    """Train every stored prediction definition and the recommender as of a moment (default: now)."""
    settings, as_of = get_settings(), as_of or datetime.now(UTC)
    results = {d.key: train_one(settings, d, as_of) for d in stored_predictions(settings)}
    return {**results, "recommender": train_recommendations(settings, as_of)}
