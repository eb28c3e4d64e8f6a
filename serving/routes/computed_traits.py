"""Computed traits over HTTP: admin declares, deletes and computes; ``profiles:read`` reads the definitions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body

from cdp.computed.compute import compute_traits
from cdp.computed.schemas import parse_definition
from cdp.computed.service import define, delete_definition, get_definition, list_definitions
from cdp.errors import InvalidInput
from cdp.events.timestamps import BadTimestamp, parse_timestamp
from cdp.store.db import reader, write_transaction
from serving.body import StrictJSONRoute
from serving.deps import Admin, EngineDep, ProfilesReader
from serving.responses import JSONBody

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/computed-traits", tags=["computed traits"])

AS_OF_EXAMPLE = "2026-03-01T00:00:00Z"
EXAMPLE = {"name": "orders_30d", "kind": "count", "event": "Order Completed", "window_days": 30,
           "filters": [{"property": "coupon", "op": "exists"}]}


@router.post("")
def define_trait(
    engine: EngineDep, _token: Admin,
    definition: Annotated[dict[str, Any], Body(openapi_examples={"count": {"value": EXAMPLE}})],
) -> JSONBody:
    """Create or replace a computed trait: kind (count, sum, avg, min, max, most_frequent, first, last,
    unique_list, unique_count), type and event, property, window_days, filters, entity."""
    parsed = parse_definition(definition)
    stored, status = write_transaction(engine, lambda conn: define(conn, definition=parsed, now=datetime.now(UTC)))
    return JSONBody({"data": stored.as_json()}, status_code=201 if status == "created" else 200)


@router.get("")
def list_traits(engine: EngineDep, _token: ProfilesReader) -> JSONBody:
    """Every computed trait, with when it was last computed."""
    with reader(engine).connect() as conn:
        return JSONBody({"data": [stored.as_json() for stored in list_definitions(conn)]})


@router.get("/{name}")
def read_trait(engine: EngineDep, _token: ProfilesReader, name: str) -> JSONBody:
    """One computed trait."""
    with reader(engine).connect() as conn:
        return JSONBody({"data": get_definition(conn, name=name).as_json()})


@router.delete("/{name}")
def delete_trait(engine: EngineDep, _token: Admin, name: str) -> JSONBody:
    """Delete a computed trait with its values on every profile and their history."""
    removed = write_transaction(engine, lambda conn: delete_definition(conn, name=name))
    return JSONBody({"data": {"name": name, "deleted": True, "values_removed": removed}})


@router.post("/{name}/compute")
def compute_trait(
    engine: EngineDep, _token: Admin, name: str,
    body: Annotated[dict[str, Any] | None, Body(openapi_examples={"as_of": {"value": {"as_of": AS_OF_EXAMPLE}}})] = None,
) -> JSONBody:
    """Recompute the trait for every profile as of ``as_of`` (default now) and write the values that changed."""
    try:
        as_of = parse_timestamp((body or {}).get("as_of"), "as_of") or datetime.now(UTC)
    except BadTimestamp as error:
        raise InvalidInput(str(error)) from None
    with reader(engine).connect() as conn:
        definition = get_definition(conn, name=name).definition
    [result] = write_transaction(engine, lambda conn: compute_traits(conn, definitions=[definition], as_of=as_of))
    return JSONBody({"data": {"name": result.name, "as_of": result.as_of, "profiles": result.profiles,
                              "changed": result.changed}})
