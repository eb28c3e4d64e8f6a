"""The state of the platform at a glance (the console's first page): traffic, profiles, models, deliveries."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import ORJSONResponse

from cdp.destinations.outbox import failing
from cdp.events.stats import recent_rate
from cdp.predictions.service import list_predictions
from cdp.profiles.service import profile_counts
from cdp.store.db import reader
from models.tracking import champions, latest_trainings, registered_name
from serving.deps import EngineDep, ProfilesReader, SettingsDep

router = APIRouter(tags=["overview"])


@router.get("/v1/overview")
def overview(engine: EngineDep, settings: SettingsDep, _token: ProfilesReader) -> ORJSONResponse:
    """Events received per minute over the last 30 minutes, profiles and their identified share, the latest
    training runs, predictions that need attention, and destinations with failing deliveries."""
    now = datetime.now(UTC)
    with reader(engine).connect() as conn:
        per_minute, capped = recent_rate(conn, now=now)
        total, identified = profile_counts(conn)
        stored = list_predictions(conn)
        failures = failing(conn)
    trainings = latest_trainings(settings.resolved_mlflow_tracking_uri, limit=5)
    promoted = champions(settings.resolved_mlflow_tracking_uri)
    warnings = [{"prediction": p.definition.key,
                 "message": "no trained model passed the gate yet: its traits come from the fallback heuristic, if any"}
                for p in stored if registered_name(p.definition.key) not in promoted]
    warnings += [{"prediction": run["model"].removeprefix("prediction-"),
                  "message": f"latest training refused by the gate: {run['gate_reason']}"}
                 for run in trainings if run["gate"] == "refused"]
    deliveries: dict[int, dict] = {}
    for row in failures:
        entry = deliveries.setdefault(row.id, {"destination_id": row.id, "name": row.name, "dead": 0, "retrying": 0})
        entry["dead" if row.status == "dead" else "retrying"] = row.n
    return ORJSONResponse({"data": {
        "events_per_minute": per_minute, "events_per_minute_capped": capped,
        "profiles": total, "identified": identified, "identified_share": identified / total if total else None,
        "trainings": trainings, "readiness_warnings": warnings, "failing_deliveries": list(deliveries.values()),
    }})
