"""The state of the platform at a glance (the console's first page): traffic, profiles, models, deliveries."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from sqlalchemy import Engine

from cdp.destinations.outbox import failing
from cdp.events.stats import recent_rate
from cdp.predictions.service import list_predictions
from cdp.profiles.service import profile_counts
from cdp.store.db import reader
from models.tracking import champions, latest_trainings, registered_name
from serving.body import StrictJSONRoute
from serving.deps import EngineDep, ProfilesReader, SettingsDep
from serving.refreshed import Refreshed
from serving.responses import JSONBody

router = APIRouter(route_class=StrictJSONRoute, tags=["overview"])
# Counting profiles takes seconds on a store of millions: counted in the background at most once a minute.
COUNTS_MAX_AGE_S = 60.0
COUNTS_FIRST_WAIT_S = 0.2


def profile_counts_for(engine: Engine) -> Refreshed[tuple[int, int]]:
    """Live profiles and identified ones, as the overview shows them (``app.state.profile_counts``)."""

    def count() -> tuple[int, int]:
        with reader(engine).connect() as conn:
            return profile_counts(conn)

    return Refreshed(count, max_age_s=COUNTS_MAX_AGE_S, first_wait_s=COUNTS_FIRST_WAIT_S)


@router.get("/v1/overview")
def overview(request: Request, engine: EngineDep, settings: SettingsDep, _token: ProfilesReader) -> JSONBody:
    """Events received per minute over the last 30 minutes, profiles and their identified share (counted at
    ``profiles_counted_at``, at most a minute ago; null while the first count runs), the latest training runs,
    predictions that need attention, and destinations with failing deliveries."""
    now = datetime.now(UTC)
    counts, counted_at = request.app.state.profile_counts.get()
    total, identified = counts if counts is not None else (None, None)
    with reader(engine).connect() as conn:
        per_minute, capped = recent_rate(conn, now=now)
        stored = list_predictions(conn)
        failures = failing(conn)
    uri, tracked = settings.resolved_mlflow_tracking_uri, request.app.state.tracked
    trainings = tracked.get("trainings", lambda: latest_trainings(uri, limit=5))
    promoted = tracked.get("champions", lambda: champions(uri))
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
    return JSONBody({"data": {
        "events_per_minute": per_minute, "events_per_minute_capped": capped,
        "profiles": total, "identified": identified, "profiles_counted_at": counted_at,
        "identified_share": identified / total if total and identified is not None else None,
        "trainings": trainings, "readiness_warnings": warnings, "failing_deliveries": list(deliveries.values()),
    }})
