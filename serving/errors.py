"""The one table from typed platform errors to HTTP status codes, and the two error body shapes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, OperationalError

from cdp.errors import CdpError, Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge, Unauthorized, Unavailable
from serving.responses import JSONBody

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


def tracking_error(error: CdpError) -> JSONBody:
    """Segment's Tracking API shape; RudderStack's SDK retries a 4xx forever without code/message."""
    return JSONBody(
        {"success": False, "code": error.code, "message": error.message}, status_code=status_of(error)
    )


def api_error(status: int, code: str, message: str) -> JSONBody:
    """Segment's Profile / Public API shape."""
    return JSONBody({"error": {"code": code, "message": message}}, status_code=status)


def store_unavailable() -> JSONBody:
    # Not the client's fault and worth retrying: every SDK retries a 503 with backoff.
    return JSONBody(
        {"success": False, "code": "store_unavailable", "message": "the store is busy or down; retry"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CdpError)
    async def _cdp_error(_request: Request, error: CdpError) -> JSONBody:
        return api_error(status_of(error), error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: RequestValidationError) -> JSONBody:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":  # FastAPI names the offset ("body.97"), orjson says what is wrong there
            return api_error(400, "invalid_json", f"request body is not valid JSON: {first['ctx']['error']}")
        where = ".".join(str(part) for part in first["loc"])
        return api_error(400, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"])

    # A number in the path or the query beyond what the store's integers hold (SQLite's driver
    # raises OverflowError before sending it), or text PostgreSQL can't take (a NUL character):
    # the request's mistake, not the server's.
    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(_request: Request, _error: Exception) -> JSONBody:
        return api_error(400, "invalid_request",
                         "a value in the request is out of the store's range: a number too large, or a NUL character")

    @app.exception_handler(OperationalError)
    async def _store_down(_request: Request, _error: OperationalError) -> JSONBody:
        return store_unavailable()
