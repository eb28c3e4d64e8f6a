"""Audiences over HTTP (``audiences:write`` saves, ``audiences:read`` reads and previews): define (computed at once), preview before saving, read, members."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Query, Request
from sqlalchemy import Connection, Engine

from cdp.audiences.membership import members_of, preview, recompute
from cdp.audiences.schemas import AudienceDefinition, parse_audience, parse_condition
from cdp.audiences.service import (
    audience_sizes, get_audience, list_audiences, membership_state, save_audience, shared_members,
)
from cdp.audiences.sync import profile_identifiers
from cdp.errors import InvalidInput
from cdp.jobs import ProgressReport
from cdp.store.db import reader, write_transaction
from serving.body import StrictJSONRoute
from serving.deps import AudiencesReader, AudiencesWriter, EngineDep
from serving.responses import JSONBody
from serving.routes.jobs import run_or_start

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/audiences", tags=["audiences"])
T = TypeVar("T")

EXAMPLE = {"key": "churn_risk_buyers", "name": "Likely to churn, bought twice",
           "condition": {"type": "and", "conditions": [
               {"type": "prediction", "prediction": "churn", "top_percent": 20},
               {"type": "event", "event": "Order Completed", "at_least": 2, "within_days": 90}]},
           "destinations": []}


@router.post("")
def define_audience(
    request: Request, engine: EngineDep, caller: AudiencesWriter,
    definition: Annotated[dict[str, Any], Body(openapi_examples={"predicted": {"value": EXAMPLE}})],
) -> JSONBody:
    """Create an audience or save a new version of it, and compute its members now (their destinations
    receive "Audience Entered"). Conditions: trait, prediction, event, audience, and, or, not. Computing
    over every profile takes a while on a large store: with ``Prefer: respond-async`` the answer is a job
    to follow (``GET /v1/jobs/{id}``) whose result is the audience."""
    parsed = parse_audience(definition)
    return run_or_start(request, caller, kind="audience_save", scope="audiences:write",
                        work=lambda progress: _save(engine, parsed, progress),
                        status=lambda saved: 201 if saved["status"] == "created" else 200)


def _save(engine: Engine, definition: AudienceDefinition, progress: ProgressReport) -> dict[str, Any]:
    # One step: on SQLite the transaction holds the write lock, so no progress can be written inside it.
    progress(0, None, "saving the definition and computing its members over every profile")

    def save(conn):  # type: ignore[no-untyped-def]
        now = datetime.now(UTC)
        stored, status = save_audience(conn, definition=definition, now=now)
        if status != "unchanged":
            recompute(conn, keys=[stored.key], as_of=now)
        return get_audience(conn, key=stored.key), status

    stored, status = write_transaction(engine, save)
    with reader(engine).connect() as conn:
        size = audience_sizes(conn).get(stored.id, 0)
    return {**stored.as_json(size=size), "status": status}


@router.post("/preview")
def preview_audience(
    engine: EngineDep, _token: AudiencesReader,
    body: Annotated[dict[str, Any], Body(openapi_examples={"predicted": {"value": {"condition": EXAMPLE["condition"]}}})],
) -> JSONBody:
    """Size and a sample of the profiles a condition holds for now; nothing is saved."""
    if not isinstance(body, dict) or "condition" not in body:
        raise InvalidInput("send {\"condition\": {...}}")
    condition = parse_condition(body["condition"])
    with reader(engine).connect() as conn:
        found = preview(conn, condition=condition, as_of=datetime.now(UTC))
    return JSONBody({"data": {"size": found.size, "sample": found.sample}})


@router.get("")
def list_all(request: Request, engine: EngineDep, _token: AudiencesReader) -> JSONBody:
    """Every audience with its size now."""
    with reader(engine).connect() as conn:
        sizes = _counted(request, conn, "sizes", lambda: audience_sizes(conn))
        return JSONBody({"data": [a.as_json(size=sizes.get(a.id, 0)) for a in list_audiences(conn)]})


@router.get("/{key}")
def read_audience(request: Request, engine: EngineDep, _token: AudiencesReader, key: str) -> JSONBody:
    """One audience with its size now."""
    with reader(engine).connect() as conn:
        stored = get_audience(conn, key=key)
        sizes = _counted(request, conn, "sizes", lambda: audience_sizes(conn))
        return JSONBody({"data": stored.as_json(size=sizes.get(stored.id, 0))})


@router.get("/{key}/overlap")
def overlap(request: Request, engine: EngineDep, _token: AudiencesReader, key: str) -> JSONBody:
    """Every other audience with the members it shares with this one (0 included), most shared first."""
    with reader(engine).connect() as conn:
        stored = get_audience(conn, key=key)
        shared = _counted(request, conn, ("shared", stored.id), lambda: shared_members(conn, audience_id=stored.id))
        sizes = _counted(request, conn, "sizes", lambda: audience_sizes(conn))
        others = [a for a in list_audiences(conn) if a.id != stored.id]
    data = [{"key": a.key, "name": a.definition.title, "size": sizes.get(a.id, 0), "shared": shared.get(a.id, 0)}
            for a in others]
    return JSONBody({"data": sorted(data, key=lambda row: (-row["shared"], row["key"])),
                     "size": sizes.get(stored.id, 0)})


def _counted(request: Request, conn: Connection, name: Hashable, count: Callable[[], T]) -> T:
    """A count over every member (a second or so over a million), kept by this server until a membership
    changes (:func:`cdp.audiences.service.membership_state`)."""
    return request.app.state.audience_counts.get(membership_state(conn), name, count)  # type: ignore[no-any-return]


@router.get("/{key}/members")
def list_members(
    engine: EngineDep, _token: AudiencesReader, key: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, next: Annotated[int, Query(ge=0)] = 0,
) -> JSONBody:
    """Members by profile id, with their first user id, anonymous id and email; ``next`` is the last profile id
    of the previous page."""
    with reader(engine).connect() as conn:
        rows = members_of(conn, audience_id=get_audience(conn, key=key).id, limit=limit, after=next)
        known = profile_identifiers(conn, [r.profile_id for r in rows])
    data = [{"profile_id": r.profile_id, "entered_at": r.entered_at, **known.get(r.profile_id, {})} for r in rows]
    return JSONBody({"data": data, "cursor": {"has_more": len(rows) == limit,
                                              "next": rows[-1].profile_id if rows else None}})
