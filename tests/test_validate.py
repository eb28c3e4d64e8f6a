"""Validation of single messages against the Segment Spec, and event time (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cdp.events.schemas import Envelope, Rejection
from cdp.events.timestamps import event_time, parse_timestamp
from cdp.events.validate import prepare_message

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
MAX = 32 * 1024


def prepare(message, envelope=None, **kwargs):  # type: ignore[no-untyped-def]
    return prepare_message(message, envelope or Envelope(received_at=NOW), max_bytes=MAX, **kwargs)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "track", "event": "X"}, "no_user_anon_id"),
        ({"type": "track", "userId": "", "anonymousId": None, "event": "X"}, "no_user_anon_id"),
        ({"type": "track", "userId": "u"}, "missing_event"),
        ({"type": "track", "userId": "u", "event": "  "}, "missing_event"),
        ({"type": "group", "userId": "u"}, "missing_group_id"),
        ({"type": "alias", "userId": "u"}, "missing_alias_ids"),
        ({"type": "alias", "anonymousId": "a", "previousId": "p"}, "missing_alias_ids"),
        ({"type": "click", "userId": "u"}, "invalid_type"),
        ({"userId": "u"}, "invalid_type"),
        ({"type": "track", "userId": "u", "event": "X", "properties": [1]}, "invalid_field"),
        ({"type": "page", "anonymousId": "a", "name": {}}, "invalid_field"),
        ({"type": "screen", "userId": "u", "name": ["Home"]}, "invalid_field"),
        ({"type": "track", "userId": "u", "event": "X", "messageId": "m" * 101}, "invalid_message_id"),
        ({"type": "track", "userId": "u", "event": "X", "messageId": {"a": 1}}, "invalid_message_id"),
        ({"type": "track", "userId": "u", "event": "X", "timestamp": "yesterday"}, "invalid_timestamp"),
        ({"type": "track", "userId": "u", "event": "X", "sentAt": 12}, "invalid_timestamp"),
        ({"type": "track", "userId": "u", "event": "X", "properties": {"blob": "x" * MAX}}, "message_too_large"),
        ([1, 2], "invalid_message"),
        ("text", "invalid_message"),
    ],
)
def test_invalid_messages_are_rejected_with_a_code(message, code) -> None:  # type: ignore[no-untyped-def]
    result = prepare(message)
    assert isinstance(result, Rejection)
    assert result.code == code, result.reason
    assert result.reason


def test_valid_message_keeps_unknown_keys_and_explicit_nulls() -> None:
    message = {
        "type": "track", "userId": "u1", "anonymousId": None, "event": "Order Completed",
        "properties": {"revenue": 12.5, "coupon": None}, "_metadata": {"nodeVersion": "20"}, "channel": "server",
        "messageId": "node-next-1700000000000-" + "a" * 36, "writeKey": "secret",
    }
    row = prepare(message)
    assert not isinstance(row, Rejection)
    assert row["message_id"] == message["messageId"] and len(row["message_id"]) == 60
    assert row["payload"]["anonymousId"] is None
    assert row["payload"]["_metadata"] == {"nodeVersion": "20"}
    assert row["payload"]["properties"]["coupon"] is None
    assert "writeKey" not in row["payload"], "the write key is a secret and must not be stored"
    assert row["event"] == "Order Completed" and row["user_id"] == "u1" and row["anonymous_id"] is None


def test_numeric_ids_are_cast_to_strings() -> None:
    row = prepare({"type": "identify", "userId": 42, "messageId": 7})
    assert row["user_id"] == "42" and row["message_id"] == "7"


def test_a_numeric_page_name_is_cast_to_a_string() -> None:
    assert prepare({"type": "page", "userId": "u", "name": 404})["event"] == "404"


def test_single_call_path_implies_the_type() -> None:
    row = prepare({"anonymousId": "a", "name": "Home"}, implied_type="page")
    assert row["type"] == "page" and row["event"] == "Home"


def test_batch_context_and_integrations_merge_into_each_message_message_wins() -> None:
    envelope = Envelope(
        received_at=NOW, context={"ip": "1.2.3.4", "library": {"name": "batch"}}, integrations={"All": False}
    )
    row = prepare({"type": "identify", "userId": "u", "context": {"library": {"name": "own"}}}, envelope)
    assert row["payload"]["context"] == {"ip": "1.2.3.4", "library": {"name": "own"}}
    assert row["payload"]["integrations"] == {"All": False}


def test_missing_message_id_is_generated_and_stable_for_retries_with_client_time() -> None:
    message = {"type": "track", "userId": "u", "event": "X", "timestamp": "2026-01-01T00:00:00Z"}
    first = prepare(dict(message, sentAt="2026-01-01T00:00:01Z"))
    retry = prepare(dict(message, sentAt="2026-01-01T00:05:00Z"))
    assert first["message_id"] == retry["message_id"]
    no_time = {"type": "track", "userId": "u", "event": "X"}
    assert prepare(no_time)["message_id"] != prepare(no_time)["message_id"]


def test_event_time_prefers_timestamp() -> None:
    row = prepare({"type": "identify", "userId": "u", "timestamp": "2026-01-01T00:00:00+02:00",
                   "originalTimestamp": "2025-01-01T00:00:00Z"})
    assert row["timestamp"] == datetime(2025, 12, 31, 22, tzinfo=UTC)
    assert row["original_timestamp"] == datetime(2025, 1, 1, tzinfo=UTC)


def test_event_time_corrects_client_clock_skew_with_sent_at() -> None:
    # The client's clock is 3 hours fast: it says it created the event at 15:00 and sent it at 15:00:05.
    envelope = Envelope(received_at=NOW, sent_at=datetime(2026, 3, 1, 15, 0, 5, tzinfo=UTC))
    row = prepare({"type": "track", "userId": "u", "event": "X", "originalTimestamp": "2026-03-01T15:00:00Z"}, envelope)
    assert row["timestamp"] == NOW - timedelta(seconds=5)
    assert row["sent_at"] == envelope.sent_at and row["received_at"] == NOW
    # A message's own sentAt wins over the envelope's.
    own = prepare({"type": "track", "userId": "u", "event": "X", "originalTimestamp": "2026-03-01T15:00:00Z",
                   "sentAt": "2026-03-01T15:01:00Z"}, envelope)
    assert own["timestamp"] == NOW - timedelta(minutes=1)


def test_event_time_falls_back_to_received_at() -> None:
    assert prepare({"type": "track", "userId": "u", "event": "X"})["timestamp"] == NOW
    assert event_time(timestamp=None, original_timestamp=NOW, sent_at=None, received_at=NOW + timedelta(1)) == NOW


def test_timestamps_without_zone_are_utc_and_any_offset_is_normalised() -> None:
    assert parse_timestamp("2026-01-01T10:00:00", "t") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert parse_timestamp("2026-01-01T10:00:00.123456-05:00", "t") == datetime(2026, 1, 1, 15, 0, 0, 123456, tzinfo=UTC)
    assert parse_timestamp(None, "t") is None
