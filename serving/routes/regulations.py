"""Regulations (GDPR / CCPA), in the shape of Segment's Public API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, BackgroundTasks
from pydantic import BaseModel, Field

from cdp.privacy.regulations import MAX_SUBJECTS, Regulation, claim_and_run, create_regulation, get_regulation
from cdp.store.db import reader, write_transaction
from serving.body import StrictJSONRoute
from serving.deps import EngineDep, RegulationsWriter
from serving.responses import JSONBody

router = APIRouter(route_class=StrictJSONRoute, tags=["regulations"])


class RegulationRequest(BaseModel):
    regulationType: str = Field(description="DELETE_ONLY | SUPPRESS_WITH_DELETE | SUPPRESS_ONLY | UNSUPPRESS")
    subjectType: str = Field(description="USER_ID | ANONYMOUS_ID | EMAIL")
    subjectIds: list[str] = Field(min_length=1, max_length=MAX_SUBJECTS)


@router.post("/v1/regulations")
def create(body: RegulationRequest, engine: EngineDep, _token: RegulationsWriter, tasks: BackgroundTasks) -> JSONBody:
    """Delete and / or suppress people across the identity graph; runs right after the answer."""
    regulation_id = write_transaction(engine, lambda conn: create_regulation(
        conn, regulation_type=body.regulationType, subject_type=body.subjectType, subject_ids=body.subjectIds,
        now=datetime.now(UTC)))
    tasks.add_task(claim_and_run, engine, regulation_id)
    return JSONBody({"data": {"regulateId": regulation_id}})


@router.get("/v1/regulations/{regulate_id}")
def show(regulate_id: str, engine: EngineDep, _token: RegulationsWriter) -> JSONBody:
    """Status of a regulation: INITIALIZED, RUNNING, FINISHED or FAILED, with what it removed."""
    with reader(engine).connect() as conn:
        return JSONBody({"data": {"regulation": public(get_regulation(conn, regulate_id))}})


def public(regulation: Regulation) -> dict[str, Any]:
    return {
        "id": regulation.id, "status": regulation.status, "overallStatus": regulation.status,
        "regulationType": regulation.regulation_type, "subjectType": regulation.subject_type,
        "subjectIds": regulation.subject_ids, "createdAt": regulation.created_at,
        "startedAt": regulation.started_at, "finishedAt": regulation.finished_at,
        "error": regulation.error, "counts": regulation.counts,
    }

