"""Journeys over HTTP (admin): define, read, delete, the lift report; the global contact policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body

from cdp.journeys.report import lift_report
from cdp.journeys.schemas import parse_journey, parse_policy
from cdp.journeys.service import active_counts, delete_journey, get_journey, get_policy, list_journeys, save_journey, set_policy
from cdp.store.db import reader, write_transaction
from serving.body import StrictJSONRoute
from serving.deps import Admin, EngineDep, JourneysReader, JourneysWriter
from serving.responses import JSONBody

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/journeys", tags=["journeys"])
policy_router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/contact-policy", tags=["journeys"])

EXAMPLE = {
    "key": "cart_recovery", "name": "Cart recovery",
    "entry": {"event": "Product Added", "filters": [{"property": "price", "op": "gte", "value": 20}]},
    "reentry_key": "cart_id", "holdout": 0.1, "exit_events": [{"event": "Order Completed"}],
    "goal": {"event": "Order Completed", "within": {"days": 3}},
    "steps": [
        {"id": "wait_checkout", "type": "wait_for_event", "event": "Checkout Started", "timeout": {"hours": 1},
         "arrived": [],
         "timed_out": [{"id": "remind", "type": "send", "destination": 1, "event": "Cart Reminder"}]},
    ],
}
POLICY = {"frequency_caps": [{"destination": None, "max": 2, "window": {"hours": 24}}],
          "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "UTC", "timezone_trait": "timezone"},
          "priority": ["cart_recovery"]}


@router.post("")
def define_journey(
    engine: EngineDep, _token: JourneysWriter,
    definition: Annotated[dict[str, Any], Body(openapi_examples={"cart": {"value": EXAMPLE}})],
) -> JSONBody:
    """Create a journey or save a new version of it; live events enter it from now on. Steps: delay,
    wait_for_event, data_split, random_split, send."""
    parsed = parse_journey(definition)
    stored, status = write_transaction(engine, lambda conn: save_journey(conn, definition=parsed, now=datetime.now(UTC)))
    return JSONBody({"data": stored.as_json()}, status_code=201 if status == "created" else 200)


@router.get("")
def list_all(engine: EngineDep, _token: JourneysReader) -> JSONBody:
    """Every journey with the number of profiles on their way now."""
    with reader(engine).connect() as conn:
        active = active_counts(conn)
        return JSONBody({"data": [j.as_json(active=active.get(j.id, 0)) for j in list_journeys(conn)]})


@router.get("/{key}")
def read_journey(engine: EngineDep, _token: JourneysReader, key: str) -> JSONBody:
    with reader(engine).connect() as conn:
        stored = get_journey(conn, key=key)
        return JSONBody({"data": stored.as_json(active=active_counts(conn).get(stored.id, 0))})


@router.delete("/{key}")
def remove(engine: EngineDep, _token: JourneysWriter, key: str) -> JSONBody:
    """Delete a journey, its instances and send log; messages already queued are still delivered."""
    write_transaction(engine, lambda conn: delete_journey(conn, key=key))
    return JSONBody({"data": {"key": key, "deleted": True}})


@router.get("/{key}/report")
def report(engine: EngineDep, _token: JourneysReader, key: str) -> JSONBody:
    """Lift: entries, sends and goal conversions of treated profiles against the holdout, with 95 % intervals;
    suppressed and deferred sends by reason."""
    with reader(engine).connect() as conn:
        return JSONBody({"data": lift_report(conn, journey=get_journey(conn, key=key)).as_json()})


@policy_router.get("")
def read_policy(engine: EngineDep, _token: JourneysReader) -> JSONBody:
    with reader(engine).connect() as conn:
        policy, updated_at = get_policy(conn)
    return JSONBody({"data": {**policy.model_dump(mode="json"), "updated_at": updated_at}})


@policy_router.put("")
def replace_policy(
    engine: EngineDep, _token: Admin,
    body: Annotated[dict[str, Any], Body(openapi_examples={"caps": {"value": POLICY}})],
) -> JSONBody:
    """Replace the contact policy: frequency caps per destination and window, quiet hours (sends wait until
    they end, in the profile's time zone trait), and journey priority (highest first) for capped slots."""
    policy = parse_policy(body)
    now = datetime.now(UTC)
    write_transaction(engine, lambda conn: set_policy(conn, policy=policy, now=now))
    return JSONBody({"data": {**policy.model_dump(mode="json"), "updated_at": now}})
