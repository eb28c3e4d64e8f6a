"""Event time of a message, Segment's way: client time corrected for the client clock's skew."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


class BadTimestamp(ValueError):
    """A timestamp field that is not an ISO 8601 date-time."""


def parse_timestamp(value: Any, field: str) -> datetime | None:
    """ISO 8601 text (``Z`` or offset; none means UTC) to an aware UTC datetime; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadTimestamp(f"{field} must be an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadTimestamp(f"{field} is not an ISO 8601 date-time: {value[:64]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def event_time(
    *, timestamp: datetime | None, original_timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """``timestamp`` if given; else ``originalTimestamp`` shifted by the skew ``receivedAt - sentAt``.

    The client's clock may be wrong by hours; both of its readings (creation and send time) are
    wrong by the same amount, so their difference added to the server's receive time is right.
    Without ``sentAt`` the skew is unknown and ``originalTimestamp`` is taken as it is.
    """
    if timestamp is not None:
        return timestamp
    if original_timestamp is not None:
        return received_at - (sent_at - original_timestamp) if sent_at is not None else original_timestamp
    return received_at
