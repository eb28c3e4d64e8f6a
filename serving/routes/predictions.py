"""Prediction definitions and their model cards over HTTP: admin writes, ``predictions:read`` reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import Engine

from cdp.config import Settings
from cdp.errors import InvalidInput, NotFound
from cdp.jobs import ProgressReport
from cdp.predictions.schemas import PredictionDefinition, parse_definition
from cdp.predictions.service import create_prediction, get_prediction, list_predictions
from cdp.predictions.traits import score_sample
from cdp.store.db import reader, write_transaction
from features import NotReady
from models.outcomes import realized_outcomes
from models.tracking import model_card, plot_artifact
from models.train import training_readiness
from serving.body import StrictJSONRoute
from serving.deps import Admin, EngineDep, PredictionsReader, SettingsDep
from serving.responses import JSONBody
from serving.routes.jobs import run_or_start

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/predictions", tags=["predictions"])

EXAMPLE = {"key": "churn_30d", "kind": "churn", "window_days": 30, "active_within_days": 90}


@router.post("")
def create(
    engine: EngineDep, _token: Admin,
    definition: Annotated[dict[str, Any], Body(openapi_examples={"churn": {"value": EXAMPLE}})],
) -> JSONBody:
    """Create a prediction (kind churn, purchase, ltv or custom; window_days; events; goal_event, goal_properties,
    goal_min_count; active_within_days, min_purchases; fallback), or a new version when it changed."""
    parsed = parse_definition(definition)
    stored, status = write_transaction(engine, lambda conn: create_prediction(conn, definition=parsed, now=datetime.now(UTC)))
    return JSONBody({"data": {**stored.as_json(), "status": status}},
                    status_code=201 if status == "created" else 200)


@router.post("/readiness")
def readiness(
    request: Request, engine: EngineDep, settings: SettingsDep, caller: PredictionsReader,
    definition: Annotated[dict[str, Any], Body(openapi_examples={"churn": {"value": EXAMPLE}})],
) -> JSONBody:
    """Whether the store's data can train this definition now: every readiness check with what it observed
    and what it needs (nothing is saved; it builds the training frame, seconds to minutes on a large store:
    send ``Prefer: respond-async`` to get a job to follow instead, see ``GET /v1/jobs/{id}``)."""
    parsed = parse_definition(definition)
    return run_or_start(request, caller, kind="prediction_readiness", scope="predictions:read",
                        work=lambda progress: _readiness(engine, settings, parsed, progress))


def _readiness(engine: Engine, settings: Settings, definition: PredictionDefinition,
               progress: ProgressReport) -> dict[str, Any]:
    try:
        _, frame, report = training_readiness(engine, definition, as_of=datetime.now(UTC), settings=settings,
                                              progress=progress)
    except NotReady as error:
        return {"ok": False, "rows": 0, "message": error.message, "checks": []}
    checks = [{"name": c.name, "passed": c.passed, "observed": c.observed, "required": c.required,
               "message": c.message, "advisory": c.advisory} for c in report.checks]
    return {"ok": report.ok, "rows": len(frame), "message": report.verdict, "checks": checks}


@router.get("")
def list_all(engine: EngineDep, _token: PredictionsReader) -> JSONBody:
    """Every prediction, at its newest version."""
    with reader(engine).connect() as conn:
        return JSONBody({"data": [stored.as_json() for stored in list_predictions(conn)]})


@router.get("/{key}")
def read(request: Request, engine: EngineDep, settings: SettingsDep, _token: PredictionsReader, key: str) -> JSONBody:
    """A prediction's definition and its champion's model card (metrics beside the baselines, gate decision,
    artifact names, last scoring's drift); ``model_card`` is null until a model is trained and promoted."""
    with reader(engine).connect() as conn:
        stored = get_prediction(conn, key=key)
    card = request.app.state.tracked.get(("card", key), lambda: model_card(settings.resolved_mlflow_tracking_uri, key))
    return JSONBody({"data": {**stored.as_json(), "model_card": card}})


@router.get("/{key}/plots/{name}", response_class=Response)
def plot(settings: SettingsDep, _token: PredictionsReader, key: str,
         name: Annotated[str, Path(pattern=r"^[a-z_]+\.png$")]) -> Response:
    """A plot of the champion's model card (``roc.png``, ``calibration.png``, ``gains.png``,
    ``value_by_decile.png``, ``feature_importance.png``, as its ``artifacts`` list), as PNG."""
    found = plot_artifact(settings.resolved_mlflow_tracking_uri, key, name)
    if found is None:
        raise NotFound(f"prediction {key!r} has no plot {name!r}: train it first, or see the model card's artifacts")
    return Response(found, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/{key}/scores")
def scores(request: Request, engine: EngineDep, _token: PredictionsReader, key: str) -> JSONBody:
    """The distribution of the scores written back to profiles: 20 bins over a sample of up to 20,000, read
    again after each scoring."""
    with reader(engine).connect() as conn:
        task = get_prediction(conn, key=key).definition.task
    return JSONBody({"data": request.app.state.tracked.get(("scores", key), lambda: _distribution(engine, key, task))})


def _distribution(engine: Engine, key: str, task: str) -> dict[str, Any]:
    with reader(engine).connect() as conn:
        values = score_sample(conn, key=key, task=task)
    if not values:
        return {"sampled": 0, "bins": []}
    low, high = min(values), max(values)
    width = (high - low) / 20 or 1.0
    counts = [0] * 20
    for value in values:
        counts[min(int((value - low) / width), 19)] += 1
    bins = [{"from": low + i * width, "to": low + (i + 1) * width, "profiles": n} for i, n in enumerate(counts)]
    return {"sampled": len(values), "bins": bins}


@router.get("/{key}/outcomes")
def outcomes(
    request: Request, engine: EngineDep, caller: PredictionsReader, key: str,
    as_of: Annotated[datetime | None, Query(description="Which scoring (its as_of); default the latest whose "
                                                        "window has passed.")] = None,
) -> JSONBody:
    """Realized outcomes of a past scoring: per score decile (1 = top 10 %), the profiles, the mean predicted
    probability or value and the realized rate or value, once the prediction's window has passed. It reads
    every score of that scoring (seconds per 100k profiles): ``Prefer: respond-async`` answers with a job.
    The scoring flow records them with the model card, which the console shows."""
    with reader(engine).connect() as conn:
        definition = get_prediction(conn, key=key).definition
    if as_of is not None and as_of.tzinfo is None:
        raise InvalidInput("as_of needs a time zone, e.g. 2026-06-01T00:00:00Z")
    return run_or_start(request, caller, kind="prediction_outcomes", scope="predictions:read",
                        work=lambda _progress: realized_outcomes(reader(engine), definition, now=datetime.now(UTC),
                                                                 as_of=as_of).as_json())
