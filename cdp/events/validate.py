"""Check one message against the Segment Spec and turn it into an ``events`` row.

Rules (contract.md): a known ``type``; ``userId`` or ``anonymousId``; track needs ``event``;
group needs ``groupId``; alias needs ``previousId`` and ``userId``; at most 32 KB; ``messageId``
an opaque string of at most 100 characters. Unknown keys and explicit nulls are kept as sent.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson

from cdp.events.schemas import MESSAGE_TYPES, Envelope, Rejection
from cdp.events.timestamps import BadTimestamp, event_time, parse_timestamp

MAX_MESSAGE_ID = 100
_NAMED = ("page", "screen")  # calls whose optional ``name`` is their event name


def prepare_message(
    message: Any, envelope: Envelope, *, max_bytes: int, implied_type: str | None = None
) -> dict[str, Any] | Rejection:
    """The ``events`` row for ``message`` (without ``source_id``), or why it can't be stored."""
    if not isinstance(message, dict):
        return Rejection("invalid_message", f"a message must be a JSON object, got {_json_type(message)}", message)
    message = _with_envelope(message, envelope)
    if implied_type is not None and message.get("type") is None:
        message["type"] = implied_type
    message.pop("writeKey", None)  # a secret: never stored with the event
    encoded = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)
    if b"\\u0000" in encoded:
        # PostgreSQL can't keep a NUL character in text or jsonb, and identifiers holding one were
        # found twice on SQLite: it goes (as RudderStack's loaders drop it), the message stays.
        message = _without_nul(message)
        encoded = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)

    message_id = message.get("messageId")
    if isinstance(message_id, int | float) and not isinstance(message_id, bool):
        message_id = str(message_id)
    if message_id is not None and not isinstance(message_id, str):
        return Rejection("invalid_message_id", "messageId must be a string", message)
    if message_id is not None and len(message_id) > MAX_MESSAGE_ID:
        return Rejection("invalid_message_id", f"messageId is longer than {MAX_MESSAGE_ID} characters", message)

    rejection = _spec_violation(message)
    if rejection is not None:
        return Rejection(rejection[0], rejection[1], message, message_id)

    size = len(encoded)
    if size > max_bytes:
        return Rejection(
            "message_too_large", f"message is {size} bytes, over the {max_bytes // 1024} KB limit", message, message_id
        )

    try:
        timestamp = parse_timestamp(message.get("timestamp"), "timestamp")
        original = parse_timestamp(message.get("originalTimestamp"), "originalTimestamp")
        sent_at = parse_timestamp(message.get("sentAt"), "sentAt") or envelope.sent_at
    except BadTimestamp as exc:
        return Rejection("invalid_timestamp", str(exc), message, message_id)

    if not message_id:
        message_id = _generated_message_id(message, has_client_time=timestamp is not None or original is not None)
        message["messageId"] = message_id
        encoded = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)

    kind = message["type"]
    return {
        "message_id": message_id,
        "type": kind,
        "event": message["event"] if kind == "track" else _identifier(message.get("name")) if kind in _NAMED else None,
        "user_id": _identifier(message.get("userId")),
        "anonymous_id": _identifier(message.get("anonymousId")),
        "timestamp": event_time(
            timestamp=timestamp, original_timestamp=original, sent_at=sent_at, received_at=envelope.received_at
        ),
        "original_timestamp": original,
        "sent_at": sent_at,
        "received_at": envelope.received_at,
        "payload": message,
        "payload_json": encoded.decode(),  # stored as is: serialized once
    }


def _spec_violation(message: dict[str, Any]) -> tuple[str, str] | None:
    kind = message.get("type")
    if kind not in MESSAGE_TYPES:
        return "invalid_type", f"type must be one of {', '.join(MESSAGE_TYPES)}, got {str(kind)[:40]!r}"
    if _identifier(message.get("userId")) is None and _identifier(message.get("anonymousId")) is None:
        return "no_user_anon_id", "a message needs a userId or an anonymousId"
    if kind == "track" and not (isinstance(message.get("event"), str) and message["event"].strip()):
        return "missing_event", "a track call needs an event name"
    if kind in _NAMED and not isinstance(message.get("name"), str | int | float | None):
        return "invalid_field", f"a {kind} call's name must be a string, got {_json_type(message['name'])}"
    if kind == "group" and _identifier(message.get("groupId")) is None:
        return "missing_group_id", "a group call needs a groupId"
    if kind == "alias" and (_identifier(message.get("previousId")) is None or _identifier(message.get("userId")) is None):
        return "missing_alias_ids", "an alias call needs a previousId and a userId"
    for key in ("properties", "traits", "context", "integrations"):
        value = message.get(key)
        if value is not None and not isinstance(value, dict):
            return "invalid_field", f"{key} must be an object, got {_json_type(value)}"
    return None


def _identifier(value: Any) -> str | None:
    """Ids may come as numbers (Segment casts them); empty strings count as absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value != "":
        return value
    return None


def _with_envelope(message: dict[str, Any], envelope: Envelope) -> dict[str, Any]:
    """Batch-level ``context`` / ``integrations`` fill in what the message itself does not set."""
    if not envelope.context and not envelope.integrations:
        return dict(message)
    merged = dict(message)
    for key, shared in (("context", envelope.context), ("integrations", envelope.integrations)):
        own = message.get(key)
        if shared and (own is None or isinstance(own, dict)):
            merged[key] = {**shared, **(own or {})}
    return merged


def _generated_message_id(message: dict[str, Any], *, has_client_time: bool) -> str:
    # With a client-side time, a retry of the same call has the same content: derive the id from
    # it so retries of clients that send no messageId still dedupe. Without one, two identical
    # calls may be two real events, so they get distinct ids.
    if not has_client_time:
        return f"cdp-{uuid.uuid4()}"
    content = {k: v for k, v in message.items() if k not in ("sentAt", "messageId")}
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))
    return f"cdp-{digest.hexdigest()[:32]}"


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
