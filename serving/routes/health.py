"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from cdp.store.db import reader
from serving.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(engine: EngineDep) -> dict[str, str]:
    """Ready when the store answers."""
    with reader(engine).connect() as conn:
        conn.execute(text("SELECT 1"))
    return {"status": "ok"}
