"""The floor of the recommendations benchmark: a bare server returning precomputed popular items.

Same stack as ``cdp serve`` (uvicorn with uvloop / httptools, the same worker count) but a plain
Starlette route: no token, no store, no model; one pre-serialised body for everyone. The items are
read from ``CDP_BENCH_POPULAR`` (a JSON list) when the server starts.

    CDP_BENCH_POPULAR='[{"item_id":"p1","score":1.0}]' python -m uvicorn bench.recs_popular:create_app --factory
"""

from __future__ import annotations

import os

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ENVIRONMENT = "CDP_BENCH_POPULAR"


def create_app() -> Starlette:
    # Read here, not through cdp.config: this server is deliberately outside the product.
    body = orjson.dumps({"items": orjson.loads(os.environ[ENVIRONMENT]), "model_version": "0", "strategy": "popular"})

    async def recommendations(request: Request) -> Response:
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(routes=[Route("/v1/recommendations/{identifier}", recommendations), Route("/health", health)])
