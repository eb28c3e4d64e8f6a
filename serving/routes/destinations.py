"""Destinations over HTTP (``destinations:write`` changes, ``destinations:read`` reads): register a webhook or Segment-compatible endpoint, read, delete,
the delivery log, replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from cdp.destinations.addresses import Allowlist
from cdp.destinations.outbox import attempts_of, enqueue, messages_page, replay
from cdp.destinations.schemas import parse_destination
from cdp.destinations.service import create_destination, delete_destination, get_destination, list_destinations
from cdp.store.db import reader, write_transaction
from serving.body import StrictJSONRoute
from serving.deps import DestinationsReader, DestinationsWriter, EngineDep
from serving.responses import JSONBody

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/destinations", tags=["destinations"])

EXAMPLE = {"type": "webhook", "name": "crm", "url": "https://hooks.example.com/cdp", "secret": "a-long-random-secret"}


@router.post("", status_code=201)
def register(
    request: Request, engine: EngineDep, _token: DestinationsWriter,
    body: Annotated[dict[str, Any], Body(openapi_examples={"webhook": {"value": EXAMPLE}})],
) -> JSONBody:
    """Register a destination. URLs reaching loopback, private, link-local, reserved or multicast
    addresses are refused unless CDP_DESTINATIONS_ALLOWLIST lists them. The secret is shown only now."""
    spec = parse_destination(body)
    allowlist = Allowlist.parse(request.app.state.settings.destinations_allowlist)
    created = write_transaction(engine, lambda conn: create_destination(
        conn, spec=spec, allowlist=allowlist, now=datetime.now(UTC)))
    return JSONBody({"data": {**created.as_json(), "secret": created.secret}}, status_code=201)


@router.get("")
def list_all(engine: EngineDep, _token: DestinationsReader) -> JSONBody:
    """Every destination (secrets are not shown)."""
    with reader(engine).connect() as conn:
        return JSONBody({"data": [d.as_json() for d in list_destinations(conn)]})


@router.get("/{destination_id}")
def read(engine: EngineDep, _token: DestinationsReader, destination_id: int) -> JSONBody:
    """One destination."""
    with reader(engine).connect() as conn:
        return JSONBody({"data": get_destination(conn, destination_id=destination_id).as_json()})


@router.delete("/{destination_id}")
def remove(engine: EngineDep, _token: DestinationsWriter, destination_id: int) -> JSONBody:
    """Delete a destination with its queued messages and delivery log."""
    write_transaction(engine, lambda conn: delete_destination(conn, destination_id=destination_id))
    return JSONBody({"data": {"id": destination_id, "deleted": True}})


@router.get("/{destination_id}/deliveries")
def deliveries(
    engine: EngineDep, _token: DestinationsReader, destination_id: int,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, next: int | None = None,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|dead)$")] = None,
) -> JSONBody:
    """The delivery log: messages newest first, each with its status and every attempt."""
    with reader(engine).connect() as conn:
        get_destination(conn, destination_id=destination_id)
        rows = messages_page(conn, destination_id=destination_id, limit=limit, before=next, status=status)
        attempts = attempts_of(conn, outbox_ids=[r.id for r in rows])
    data = [{"id": r.id, "idempotency_key": r.idempotency_key, "status": r.status, "attempts": r.attempts,
             "next_attempt_at": r.next_attempt_at if r.status == "pending" else None, "last_error": r.last_error,
             "created_at": r.created_at, "delivered_at": r.delivered_at, "message": r.payload,
             "log": [{"attempt": a.attempt, "status_code": a.status_code, "error": a.error,
                      "duration_ms": a.duration_ms, "at": a.at} for a in attempts.get(r.id, [])]}
            for r in rows]
    return JSONBody({"data": data, "cursor": {"has_more": len(rows) == limit,
                                              "next": rows[-1].id if rows else None}})


@router.post("/{destination_id}/replay")
def replay_messages(
    engine: EngineDep, _token: DestinationsWriter, destination_id: int,
    body: Annotated[dict[str, Any] | None, Body(openapi_examples={"dead": {"value": {"status": "dead"}}})] = None,
) -> JSONBody:
    """Send dead messages (or ``status: delivered`` ones, or the given ``ids``) again from a first attempt."""
    body = body or {}
    ids = [int(i) for i in body.get("ids") or [] if isinstance(i, int)]

    def run(conn):  # type: ignore[no-untyped-def]
        get_destination(conn, destination_id=destination_id)
        return replay(conn, destination_id=destination_id, now=datetime.now(UTC), ids=ids,
                      status=body.get("status", "dead"))

    return JSONBody({"data": {"replayed": write_transaction(engine, run)}})


@router.post("/{destination_id}/test", status_code=202)
def test_send(engine: EngineDep, _token: DestinationsWriter, destination_id: int) -> JSONBody:
    """Queue a test message (a track event "CDP Test Message"); it shows in the delivery log like any other."""
    now = datetime.now(UTC)
    key = f"test-{uuid.uuid4().hex}"
    message = {"type": "track", "event": "CDP Test Message", "messageId": key, "timestamp": now.isoformat(),
               "userId": "cdp-test-user", "properties": {"test": True}}

    def queue(conn):  # type: ignore[no-untyped-def]
        get_destination(conn, destination_id=destination_id)
        enqueue(conn, destination_ids=[destination_id], messages=[(key, message)], now=now)

    write_transaction(engine, queue)
    return JSONBody({"data": {"idempotency_key": key, "queued": True}}, status_code=202)

