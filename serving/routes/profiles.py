"""The Profile API, in Segment's shapes: short ``/v1/profiles/...`` and the long ``/v1/spaces/...`` form."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from cdp.identity.schemas import USERS
from cdp.identity.service import merge_log, split
from cdp.profiles.service import (
    audiences_of,
    events_page,
    external_ids_page,
    metadata_of,
    resolve_identifier,
    traits_page,
)
from cdp.store.db import reader, write_transaction
from serving.body import StrictJSONRoute
from serving.deps import Admin, EngineDep, ProfilesReader
from serving.responses import JSONBody

router = APIRouter(route_class=StrictJSONRoute, tags=["profiles"])

Identifier = Annotated[str, "type:value, e.g. user_id:u1 or email:a%40b.io (URL-encoded)"]
Names = Annotated[str | None, Query(description="Comma-separated names.")]


def _names(value: str | None) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


def _cursor(request: Request, limit: int, following: str | None) -> dict[str, Any]:
    return {"url": request.url.path, "has_more": following is not None, "next": following or "", "limit": limit}


def traits(
    request: Request, engine: EngineDep, _token: ProfilesReader, identifier: Identifier, collection: str = USERS,
    include: Names = None, verbose: bool = False, class_: Annotated[str | None, Query(alias="class")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 10, next: str | None = None,
) -> JSONBody:
    """Current traits (identify, computed, predicted, audience) of a profile; ``verbose`` adds provenance."""
    with reader(engine).connect() as conn:
        profile_id = resolve_identifier(conn, identifier, entity=collection)
        page = traits_page(conn, profile_id=profile_id, include=_names(include), classes=_names(class_),
                           limit=limit, after=next)
    values = {
        row.name: {"value": row.value, "source": row.source, "class": row._mapping["class"],
                   "updated_at": row.event_time} if verbose else row.value
        for row in page.items
    }
    return JSONBody({"traits": values, "cursor": _cursor(request, limit, page.next)})


def profile_events(
    request: Request, engine: EngineDep, _token: ProfilesReader, identifier: Identifier, collection: str = USERS,
    limit: Annotated[int, Query(ge=1, le=100)] = 10, next: str | None = None, start: str | None = None,
    end: str | None = None, include: Names = None, exclude: Names = None,
) -> JSONBody:
    """Events of every call type, newest first, with cursors."""
    with reader(engine).connect() as conn:
        profile_id = resolve_identifier(conn, identifier, entity=collection)
        page = events_page(conn, profile_id=profile_id, limit=limit, before=next, start=start, end=end,
                           include=_names(include), exclude=_names(exclude))
    return JSONBody({"data": [_event(row) for row in page.items], "cursor": _cursor(request, limit, page.next)})


def _event(row: Any) -> dict[str, Any]:
    payload = row.payload
    event = {
        "message_id": row.message_id, "source_id": row.source_id, "type": row.type,
        "user_id": row.user_id, "anonymous_id": row.anonymous_id,
        "timestamp": row.timestamp, "received_at": row.received_at, "context": payload.get("context"),
    }
    if row.type == "track":
        event["event"] = row.event
    elif row.type in ("page", "screen"):
        event["name"] = row.event
    if row.type in ("identify", "group"):
        event["traits"] = payload.get("traits")
    else:
        event["properties"] = payload.get("properties")
    for key, field in (("groupId", "group_id"), ("previousId", "previous_id")):
        if key in payload:
            event[field] = payload[key]
    return event


def external_ids(
    request: Request, engine: EngineDep, _token: ProfilesReader, identifier: Identifier, collection: str = USERS,
    include: Names = None, limit: Annotated[int, Query(ge=1, le=100)] = 10, next: str | None = None,
) -> JSONBody:
    """Identifiers linked to the profile by the identity graph."""
    with reader(engine).connect() as conn:
        profile_id = resolve_identifier(conn, identifier, entity=collection)
        page = external_ids_page(conn, profile_id=profile_id, include=_names(include), limit=limit, after=next)
    data = [
        {"type": r.type, "id": r.value, "source_id": r.source_id, "collection": collection, "encoding": "none",
         "first_message_id": r.first_message_id, "created_at": r.created_at}
        for r in page.items
    ]
    return JSONBody({"data": data, "cursor": _cursor(request, limit, page.next)})


def audiences(engine: EngineDep, _token: ProfilesReader, identifier: Identifier, collection: str = USERS) -> JSONBody:
    """Audiences the profile is in now."""
    with reader(engine).connect() as conn:
        profile_id = resolve_identifier(conn, identifier, entity=collection)
        rows = audiences_of(conn, profile_id=profile_id)
    return JSONBody({"data": [{"key": r.name, "name": r.name, "entered_at": r.event_time} for r in rows]})


def metadata(engine: EngineDep, _token: ProfilesReader, identifier: Identifier, collection: str = USERS) -> JSONBody:
    """When the profile was created and last updated, and its first and last messages."""
    with reader(engine).connect() as conn:
        profile_id = resolve_identifier(conn, identifier, entity=collection)
        return JSONBody({"metadata": metadata_of(conn, profile_id=profile_id)})


def merges(engine: EngineDep, _token: ProfilesReader, identifier: Identifier, collection: str = USERS) -> JSONBody:
    """The merge log of a profile: every merge and refused merge, with the rule, identifier and message."""
    with reader(engine).connect() as conn:
        profile_id = resolve_identifier(conn, identifier, entity=collection)
        log = merge_log(conn, profile_id=profile_id)
    return JSONBody({"profile_id": profile_id, "data": [asdict(record) for record in log]})


@router.post("/v1/merges/{merge_id}/split")
def split_merge(request: Request, engine: EngineDep, _token: Admin, merge_id: int) -> JSONBody:
    """Undo a merge: the merged profile comes back with its identifiers, events and traits."""
    rules = request.app.state.ingest_config.identity
    record = write_transaction(engine, lambda conn: split(conn, merge_id=merge_id, rules=rules, now=datetime.now(UTC)))
    return JSONBody({"data": asdict(record)})


for _name, _handler in (("merges", merges), ("traits", traits), ("events", profile_events), ("external_ids", external_ids),
                        ("audiences", audiences), ("metadata", metadata)):
    router.add_api_route(f"/v1/profiles/{{identifier}}/{_name}", _handler, methods=["GET"])
    router.add_api_route(f"/v1/spaces/{{space_id}}/collections/{{collection}}/profiles/{{identifier}}/{_name}",
                         _handler, methods=["GET"], include_in_schema=_name == "traits")
