"""Typed errors of the platform, without HTTP knowledge; ``serving`` maps them to status codes."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class CdpError(Exception):
    """A failure with a stable machine-readable ``code`` and a one-line human ``message``."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(CdpError):
    code = "invalid_request"


class Unauthorized(CdpError):
    code = "authentication_error"


class Forbidden(CdpError):
    code = "forbidden"


class PayloadTooLarge(CdpError):
    code = "payload_too_large"


class NotFound(CdpError):
    code = "not_found"


class Conflict(CdpError):
    code = "conflict"


class Unavailable(CdpError):
    """Not ready yet, worth retrying later (e.g. no recommender has been trained)."""

    code = "unavailable"


def invalid_input(error: ValidationError, prefix: str) -> InvalidInput:
    """The first problem pydantic found, as one line: ``prefix`` then where it is and what is wrong."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return InvalidInput(prefix + (f"{where}: {message}" if where else message))


def validated(model: type[M], data: Any, *, what: str, named_by: str | None = None) -> M:
    """JSON ``data`` as ``model``, or ``InvalidInput`` naming ``what`` (and its ``named_by`` field) and the problem."""
    if not isinstance(data, dict):
        raise InvalidInput(f"a {what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        name = data.get(named_by) if named_by else None
        raise invalid_input(error, f"{what} {name!r}: " if isinstance(name, str) else f"{what}: ") from None
