"""The quarantine over HTTP: messages that failed validation, with the reason; replay after a fix."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from cdp.events.quarantine import count_pending, list_pending, replay
from cdp.jobs import ProgressReport
from cdp.store.db import reader, write_transaction
from serving.body import StrictJSONRoute
from serving.deps import Admin, EngineDep, GovernanceReader
from serving.responses import JSONBody
from serving.routes.jobs import run_or_start

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/quarantine", tags=["tracking plans"])


@router.get("")
def pending(
    engine: EngineDep, _: GovernanceReader, limit: Annotated[int, Query(ge=1, le=500)] = 50, code: str | None = None,
) -> JSONBody:
    """Messages waiting for a replay, oldest first, and how many there are per reason code."""
    with reader(engine).connect() as conn:
        counts = count_pending(conn)
        rows = list_pending(conn, limit=limit, code=code)
    data = [{"id": r.id, "source": r.source, "message_id": r.message_id, "code": r.code, "reason": r.reason,
             "received_at": r.received_at, "message": r.payload} for r in rows]
    return JSONBody({"counts": counts, "data": data})


@router.post("/replay")
def replay_pending(
    request: Request, engine: EngineDep, caller: Admin,
    body: Annotated[dict[str, Any] | None, Body(openapi_examples={"some": {"value": {"ids": [1, 2]}}})] = None,
) -> JSONBody:
    """Validate quarantined messages again (all, or the given ``ids``) and store those that now pass; with
    ``Prefer: respond-async`` as a job to follow (``GET /v1/jobs/{id}``)."""
    ids = (body or {}).get("ids")
    chosen = [int(i) for i in ids if isinstance(i, int)] if isinstance(ids, list) else None
    config = request.app.state.ingest_config

    def run(progress: ProgressReport) -> dict[str, int]:
        progress(0, None, "validating the quarantined messages again")
        result = write_transaction(engine, lambda conn: replay(conn, now=datetime.now(UTC), config=config, ids=chosen))
        return {"replayed": result.replayed, "still_invalid": result.still_invalid}

    return run_or_start(request, caller, kind="quarantine_replay", scope="admin", work=run)
