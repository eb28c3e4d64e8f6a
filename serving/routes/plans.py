"""Tracking plans (Segment Protocols): plans and their versions, per-source enforcement, violations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from cdp.governance.schemas import WINDOWS, Mode, TrackingPlan, Window
from cdp.governance.service import (
    add_version, assign_plan, count_violations, create_plan, get_plan, plan_names, unassign_plan,
)
from cdp.store.db import reader, write_transaction
from serving.body import StrictJSONRoute
from serving.deps import Admin, EngineDep, GovernanceReader

router = APIRouter(route_class=StrictJSONRoute, tags=["tracking plans"])

RULES_DOC = (
    'One version of the plan: `{"events": {"Order Completed": <JSON Schema>}, "identify": <JSON Schema>, '
    '"group": <JSON Schema>, "common": <JSON Schema>, "allow_unplanned": false}`. Every schema is draft-07 and '
    "applies to the whole message, as in Segment Protocols: property rules sit under `properties.properties`, "
    "trait rules under `properties.traits`."
)


class NewPlan(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    rules: dict[str, Any] = Field(description=RULES_DOC)


class NewVersion(BaseModel):
    rules: dict[str, Any] = Field(description=RULES_DOC)


class Assignment(BaseModel):
    plan: str = Field(description="Name of the tracking plan; the source always enforces its newest version.")
    mode: Mode = Field(description="allow: count violations; flag: also mark the event in "
                                   "`context.violationErrors`; block: keep it in the quarantine instead.")


class SourcePlanOut(BaseModel):
    source: str
    plan: str
    mode: Mode


class PlanOut(BaseModel):
    name: str
    version: int
    versions: int = Field(description="The newest version.")
    rules: dict[str, Any]
    created_at: datetime
    sources: list[SourcePlanOut]


class ViolationCountOut(BaseModel):
    source: str
    type: str
    event: str | None
    kind: str = Field(description="Unplanned-Event, Required-Missing, Datatype-Mismatch, Additional-Properties, "
                                  "Invalid-Value or Unknown-Violation.")
    count: int


class ViolationsOut(BaseModel):
    window: Window
    since: datetime
    until: datetime
    data: list[ViolationCountOut]


def _plan_out(plan: TrackingPlan) -> PlanOut:
    return PlanOut(
        name=plan.name, version=plan.version, versions=plan.versions, rules=dict(plan.rules),
        created_at=plan.created_at, sources=[SourcePlanOut(source=s.source, plan=s.plan, mode=s.mode) for s in plan.sources],
    )


@router.post("/v1/tracking-plans", status_code=201)
def create(body: NewPlan, engine: EngineDep, _: Admin) -> PlanOut:
    """Create a tracking plan; its rules are version 1."""
    plan = write_transaction(engine, lambda conn: create_plan(conn, name=body.name, rules=body.rules, now=datetime.now(UTC)))
    return _plan_out(plan)


@router.get("/v1/tracking-plans")
def list_all(engine: EngineDep, _: GovernanceReader) -> list[PlanOut]:
    """Every tracking plan at its newest version, with the sources enforcing it."""
    with reader(engine).connect() as conn:
        return [_plan_out(get_plan(conn, name=name)) for name in plan_names(conn)]


@router.get("/v1/tracking-plans/{name}")
def show(name: str, engine: EngineDep, _: GovernanceReader, version: int | None = None) -> PlanOut:
    """A tracking plan at a version (default: the newest), with the sources enforcing it."""
    with reader(engine).connect() as conn:
        return _plan_out(get_plan(conn, name=name, version=version))


@router.post("/v1/tracking-plans/{name}/versions", status_code=201)
def new_version(name: str, body: NewVersion, engine: EngineDep, _: Admin) -> PlanOut:
    """Add a version; the plan's sources enforce it from now on (running servers within seconds)."""
    plan = write_transaction(engine, lambda conn: add_version(conn, name=name, rules=body.rules, now=datetime.now(UTC)))
    return _plan_out(plan)


@router.put("/v1/sources/{source}/tracking-plan")
def assign(source: str, body: Assignment, engine: EngineDep, _: Admin) -> SourcePlanOut:
    """Make a source enforce a tracking plan in a mode."""
    assigned = write_transaction(
        engine, lambda conn: assign_plan(conn, source=source, plan=body.plan, mode=body.mode, now=datetime.now(UTC))
    )
    return SourcePlanOut(source=assigned.source, plan=assigned.plan, mode=assigned.mode)


@router.delete("/v1/sources/{source}/tracking-plan", status_code=204)
def unassign(source: str, engine: EngineDep, _: Admin) -> Response:
    """Stop enforcing a tracking plan on a source."""
    write_transaction(engine, lambda conn: unassign_plan(conn, source=source))
    return Response(status_code=204)


@router.get("/v1/violations")
def violations(
    engine: EngineDep, _: GovernanceReader, source: str | None = None, window: Window = "24h"
) -> ViolationsOut:
    """Violations per source, event and kind received in the last hour, day or week, most frequent first."""
    now = datetime.now(UTC)
    with reader(engine).connect() as conn:
        counts = count_violations(conn, now=now, source=source)
    data = [
        ViolationCountOut(source=c.source, type=c.type, event=c.event, kind=c.kind, count=c.counts[window])
        for c in counts
        if c.counts[window]
    ]
    return ViolationsOut(window=window, since=now - WINDOWS[window], until=now, data=sorted(data, key=lambda c: -c.count))
