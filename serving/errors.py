"""The one table from typed platform errors to HTTP status codes, and the two error body shapes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from sqlalchemy.exc import OperationalError

from cdp.errors import CdpError, Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge, Unauthorized, Unavailable

STATUS = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Unavailable: 503,
}


def status_of(error: CdpError) -> int:
    for kind, status in STATUS.items():
        if isinstance(error, kind):
            return status
    return 400


def tracking_error(error: CdpError) -> ORJSONResponse:
    """Segment's Tracking API shape; RudderStack's SDK retries a 4xx forever without code/message."""
    return ORJSONResponse(
        {"success": False, "code": error.code, "message": error.message}, status_code=status_of(error)
    )


def api_error(status: int, code: str, message: str) -> ORJSONResponse:
    """Segment's Profile / Public API shape."""
    return ORJSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def store_unavailable() -> ORJSONResponse:
    # Not the client's fault and worth retrying: every SDK retries a 503 with backoff.
    return ORJSONResponse(
        {"success": False, "code": "store_unavailable", "message": "the store is busy or down; retry"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CdpError)
    async def _cdp_error(_request: Request, error: CdpError) -> ORJSONResponse:
        return api_error(status_of(error), error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: RequestValidationError) -> ORJSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        return api_error(400, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"])

    @app.exception_handler(OperationalError)
    async def _store_down(_request: Request, _error: OperationalError) -> ORJSONResponse:
        return store_unavailable()
