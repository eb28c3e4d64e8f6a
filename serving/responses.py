"""The JSON response of the API routes."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response


class JSONBody(Response):
    """JSON rendered by orjson, as FastAPI's ``ORJSONResponse`` did before it was deprecated (it now
    warns on every use, into the server's log)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
