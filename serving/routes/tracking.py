"""The Segment HTTP Tracking API, as the official SDKs and analytics.js speak it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from cdp.auth.service import Source
from cdp.errors import CdpError, InvalidInput, PayloadTooLarge, Unauthorized
from cdp.events.ingest import prepare_batch, store_prepared
from cdp.events.schemas import BatchRequest, Envelope, IngestResult, SpecMessage
from cdp.events.timestamps import BadTimestamp, parse_timestamp
from cdp.governance.enforce import PLAN_VIOLATION
from serving.body import StrictJSONRoute, read_json_body
from serving.deps import basic_user
from serving.errors import store_unavailable, tracking_error
from serving.responses import JSONBody

router = APIRouter(route_class=StrictJSONRoute, tags=["tracking"])

SINGLE_CALLS = {
    "identify": "i",
    "track": "t",
    "page": "p",
    "screen": "s",
    "group": "g",
    "alias": "a",
}
BATCH_PATHS = ("batch", "import", "b")
MAX_ERRORS_SHOWN = 20
OK = b'{"success":true}'

_AUTH_DOC = {
    "security": [{"writeKeyBasic": []}],
    "responses": {
        "400": {"description": "Invalid JSON or message: `{success: false, code, message}`"},
        "401": {"description": "Unknown or missing write key"},
        "413": {"description": "Over 32 KB per message, 500 KB per request or 2,500 messages"},
    },
}


async def _track(request: Request, body: Any, implied_type: str | None) -> Response:
    """Authenticate, validate and durably store; 200 only after the commit."""
    settings = request.app.state.settings
    received_at = datetime.now(UTC)
    source = _authenticate(request, body)
    if implied_type is None:
        messages, envelope = _batch(body, received_at, settings.max_batch_messages)
    else:
        messages, envelope = [body], Envelope(received_at=received_at)

    config = request.app.state.ingest_config
    # Checked here, in this worker, so that the store's single writer only inserts and commits.
    prepared = prepare_batch(messages, envelope, config=config, implied_type=implied_type)

    def store(conn: Connection) -> IngestResult:
        return store_prepared(conn, source_id=source.id, prepared=prepared, envelope=envelope, config=config,
                              defer_attribution=True)

    try:
        # Committed together with the requests that arrived alongside it; answered after the commit.
        result: IngestResult = await asyncio.wrap_future(request.app.state.committer.submit(store))
    except OperationalError:
        return store_unavailable()
    request.app.state.attribution.notify(result.deferred)
    # A message that breaks the Spec is the client's mistake (400). One that a tracking plan blocks
    # is kept in the quarantine and reported as in a batch, with a 200 as Segment answers it.
    if implied_type is not None and result.rejections and result.rejections[0].code != PLAN_VIOLATION:
        rejection = result.rejections[0]
        error = (PayloadTooLarge if rejection.code == "message_too_large" else InvalidInput)(
            rejection.reason, code=rejection.code
        )
        return tracking_error(error)
    if not result.rejections:
        return Response(OK, media_type="application/json")
    return JSONBody(
        {
            "success": True,
            "accepted": result.accepted,
            "quarantined": result.quarantined,
            "errors": [
                {"index": r.index, "messageId": r.message_id, "code": r.code, "message": r.reason}
                for r in result.rejections[:MAX_ERRORS_SHOWN]
            ],
        }
    )


def _authenticate(request: Request, body: Any) -> Source:
    write_key = basic_user(request.headers.get("authorization"))
    if write_key is None and isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        write_key = body["writeKey"]
    if not write_key:
        raise Unauthorized("missing write key: send HTTP Basic auth with the write key as user name")
    source = request.app.state.write_keys.lookup(write_key)
    if source is None:
        raise Unauthorized("unknown or disabled write key")
    return source


def _batch(body: Any, received_at: datetime, max_messages: int) -> tuple[list[Any], Envelope]:
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise InvalidInput('a batch request is {"batch": [messages...]}', code="invalid_batch")
    messages = body["batch"]
    if len(messages) > max_messages:
        raise PayloadTooLarge(f"batch has {len(messages)} messages, over the limit of {max_messages}")
    try:
        sent_at = parse_timestamp(body.get("sentAt"), "sentAt")
    except BadTimestamp as exc:
        raise InvalidInput(str(exc), code="invalid_timestamp") from None
    context, integrations = body.get("context"), body.get("integrations")
    return messages, Envelope(
        received_at=received_at,
        sent_at=sent_at,
        context=context if isinstance(context, dict) else None,
        integrations=integrations if isinstance(integrations, dict) else None,
    )


def _endpoint(implied_type: str | None):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        try:
            body = await read_json_body(request, max_bytes=request.app.state.settings.max_request_bytes)
            return await _track(request, body, implied_type)
        except CdpError as error:
            return tracking_error(error)

    return endpoint


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}, **_AUTH_DOC}


def schema_components() -> dict[str, Any]:
    """JSON Schemas of the bodies, for the OpenAPI document's components."""
    schema = BatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "BatchRequest": schema}


for _type, _short in SINGLE_CALLS.items():
    for _path in (_type, _short):
        router.add_api_route(
            f"/v1/{_path}",
            _endpoint(_type),
            methods=["POST"],
            summary=f"{_type.capitalize()} call" + (" (analytics.js short path)" if _path == _short else ""),
            description=f"One `{_type}` message of the Segment Spec. Answers 200 `{{success: true}}` once stored.",
            openapi_extra=_body_doc(SpecMessage),
        )
for _path in BATCH_PATHS:
    router.add_api_route(
        f"/v1/{_path}",
        _endpoint(None),
        methods=["POST"],
        summary="Batch of messages" + (" (analytics.js short path)" if _path == "b" else ""),
        description=(
            "Up to 2,500 messages. Valid messages are stored (a repeated messageId is a no-op); invalid ones "
            "are kept in the quarantine with the reason and counted in the answer."
        ),
        openapi_extra=_body_doc(BatchRequest),
    )
