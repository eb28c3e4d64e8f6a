"""Prediction definitions and their model cards over HTTP: admin writes, ``predictions:read`` reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import ORJSONResponse

from cdp.errors import InvalidInput
from cdp.predictions.schemas import parse_definition
from cdp.predictions.service import create_prediction, get_prediction, list_predictions
from cdp.store.db import reader, write_transaction
from models.outcomes import realized_outcomes
from models.tracking import model_card
from serving.deps import Admin, EngineDep, PredictionsReader, SettingsDep

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])

EXAMPLE = {"key": "churn_30d", "kind": "churn", "window_days": 30, "active_within_days": 90}


@router.post("")
def create(
    engine: EngineDep, _token: Admin,
    definition: Annotated[dict[str, Any], Body(openapi_examples={"churn": {"value": EXAMPLE}})],
) -> ORJSONResponse:
    """Create a prediction (kind churn, purchase, ltv or custom; window_days; events; goal_event, goal_properties,
    goal_min_count; active_within_days, min_purchases; fallback), or a new version when it changed."""
    parsed = parse_definition(definition)
    stored, status = write_transaction(engine, lambda conn: create_prediction(conn, definition=parsed, now=datetime.now(UTC)))
    return ORJSONResponse({"data": {**stored.as_json(), "status": status}},
                          status_code=201 if status == "created" else 200)


@router.get("")
def list_all(engine: EngineDep, _token: PredictionsReader) -> ORJSONResponse:
    """Every prediction, at its newest version."""
    with reader(engine).connect() as conn:
        return ORJSONResponse({"data": [stored.as_json() for stored in list_predictions(conn)]})


@router.get("/{key}")
def read(engine: EngineDep, settings: SettingsDep, _token: PredictionsReader, key: str) -> ORJSONResponse:
    """A prediction's definition and its champion's model card (metrics beside the baselines, gate decision,
    artifact names, last scoring's drift); ``model_card`` is null until a model is trained and promoted."""
    with reader(engine).connect() as conn:
        stored = get_prediction(conn, key=key)
    card = model_card(settings.resolved_mlflow_tracking_uri, key)
    return ORJSONResponse({"data": {**stored.as_json(), "model_card": card}})


@router.get("/{key}/outcomes")
def outcomes(
    engine: EngineDep, _token: PredictionsReader, key: str,
    as_of: Annotated[datetime | None, Query(description="Which scoring (its as_of); default the latest whose "
                                                        "window has passed.")] = None,
) -> ORJSONResponse:
    """Realized outcomes of a past scoring: per score decile (1 = top 10 %), the profiles, the mean predicted
    probability or value and the realized rate or value, once the prediction's window has passed."""
    with reader(engine).connect() as conn:
        definition = get_prediction(conn, key=key).definition
    if as_of is not None and as_of.tzinfo is None:
        raise InvalidInput("as_of needs a time zone, e.g. 2026-06-01T00:00:00Z")
    found = realized_outcomes(reader(engine), definition, now=datetime.now(UTC), as_of=as_of)
    return ORJSONResponse({"data": found.as_json()})
