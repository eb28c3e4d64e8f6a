"""Typed errors of the platform, without HTTP knowledge; ``serving`` maps them to status codes."""

from __future__ import annotations


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
