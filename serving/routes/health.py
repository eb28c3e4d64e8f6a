"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from cdp.events.attribution import count_pending
from cdp.store.db import reader
from serving.body import StrictJSONRoute
from serving.deps import EngineDep

router = APIRouter(route_class=StrictJSONRoute, tags=["health"])


@router.get("/health")
def health(engine: EngineDep) -> dict[str, str | int]:
    """Ready when the store answers; ``attribution_backlog``: events stored, not yet on a profile."""
    with reader(engine).connect() as conn:
        backlog = count_pending(conn)
    return {"status": "ok", "attribution_backlog": backlog}
