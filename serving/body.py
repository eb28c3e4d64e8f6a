"""Request bodies: as real SDKs send them (JSON whatever the Content-Type says, maybe gzipped), and
as FastAPI parses them for every other route, strictly."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from cdp.errors import InvalidInput, PayloadTooLarge

DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def read_json_body(request: Request, *, max_bytes: int) -> Any:
    """The body parsed as JSON; 413 past ``max_bytes`` after decompression, 400 when not JSON."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is {declared} bytes, over the {max_bytes // 1024} KB limit")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise PayloadTooLarge(f"request body is over the {max_bytes // 1024} KB limit")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raw = _decompress(bytes(raw), encoding, max_bytes)
    if not raw.strip():
        raise InvalidInput("request body is empty", code="invalid_json")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", code="invalid_json") from None


def _decompress(raw: bytes, encoding: str, max_bytes: int) -> bytes:
    if encoding not in DECODERS:
        raise InvalidInput(f"unsupported Content-Encoding {encoding!r}; use gzip or none", code="unsupported_encoding")
    decoder = zlib.decompressobj(DECODERS[encoding])
    try:
        # Bounded output: a small gzip bomb must not inflate into memory before the size check.
        body = decoder.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise InvalidInput(f"body is not valid {encoding} data: {exc}", code="invalid_encoding") from None
    if len(body) > max_bytes or decoder.unconsumed_tail:
        raise PayloadTooLarge(f"request body is over the {max_bytes // 1024} KB limit after decompression")
    return body


class StrictJSONRequest(Request):
    """A request whose JSON body is parsed as JSON is written: Python's parser, which FastAPI uses,
    also takes ``NaN`` and ``Infinity``, which no JSON document holds and which a definition
    stored as JSON would keep as null (a computed trait's filter became unreadable: a 500 on
    every later read). A body that is not JSON is a 400 (serving.errors), as any other."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """The route class of every router: its endpoint reads :class:`StrictJSONRequest` bodies."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
