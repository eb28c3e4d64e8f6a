"""JSON documents (definitions sent by API, CLI or file) validated into pydantic models, errors in one line."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cdp.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def validate_document(model: type[M], data: Any, *, what: str, name_key: str) -> M:
    """``model`` from JSON data, or ``InvalidInput`` naming the document (by ``name_key``) and its first problem."""
    if not isinstance(data, dict):
        raise InvalidInput(f"a {what} definition must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        name = data.get(name_key) if isinstance(data.get(name_key), str) else None
        prefix = f"{what} {name!r}: " if name else f"{what}: "
        raise InvalidInput(prefix + (f"{where}: {message}" if where else message)) from None
