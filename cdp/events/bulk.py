"""Bulk writes of events at the driver level: the Tracking API's insert, the follower's attribution.

Why the driver level, and the insert statement itself: :mod:`cdp.store.rows`. Here the rows of a
request become its parameters, reusing what validation already serialized.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection

from cdp.store.rows import insert_statement
from cdp.store.tables import events
from cdp.store.types import dumps_json, sqlite_datetime

_COLUMNS = ("source_id", "message_id", "type", "event", "user_id", "anonymous_id", "timestamp",
            "original_timestamp", "sent_at", "received_at", "payload", "profile_id", "pending")
_ON_CONFLICT = "ON CONFLICT (message_id, source_id) DO NOTHING"


def insert_event_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert ``events`` rows (dicts keyed by column; ``profile_id`` and ``pending`` optional).

    A (source, messageId) already stored is skipped.
    """
    if not rows:
        return
    # The statement is cdp.store.rows'; the parameters are built here, where the rows' shape is known.
    statement = insert_statement(conn.dialect.name, events, _COLUMNS, _ON_CONFLICT)
    if conn.dialect.name == "postgresql":
        columns = [[row.get(name) for row in rows] for name in _COLUMNS]
        columns[_COLUMNS.index("payload")] = [_payload_text(row) for row in rows]
        columns[_COLUMNS.index("pending")] = [bool(row.get("pending")) for row in rows]
        conn.exec_driver_sql(statement, tuple(columns))
        return
    conn.exec_driver_sql(statement, _sqlite_params(rows))


def _sqlite_params(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    # The rows of a request share receivedAt and mostly sentAt: each distinct time is formatted once.
    texts: dict[datetime | None, str | None] = {None: None}

    def text(value: datetime | None) -> str | None:
        if value not in texts:
            texts[value] = sqlite_datetime(value)
        return texts[value]

    return [
        (row["source_id"], row["message_id"], row["type"], row.get("event"), row.get("user_id"),
         row.get("anonymous_id"), text(row["timestamp"]), text(row.get("original_timestamp")), text(row.get("sent_at")),
         text(row["received_at"]), _payload_text(row), row.get("profile_id"), bool(row.get("pending")))
        for row in rows
    ]


def _payload_text(row: dict[str, Any]) -> str:
    # Validation serialized the message already to check its size (cdp.events.validate).
    return row.get("payload_json") or dumps_json(row["payload"])


def set_attributions(conn: Connection, attributions: list[tuple[int, int | None]]) -> None:
    """Attribute pending events: ``(event id, profile id)`` pairs; they are pending no more."""
    if not attributions:
        return
    if conn.dialect.name == "postgresql":
        event_ids, profile_ids = (list(column) for column in zip(*attributions, strict=True))
        conn.exec_driver_sql(
            "UPDATE events SET profile_id = v.profile_id, pending = false "
            "FROM unnest(%b::bigint[], %b::bigint[]) AS v(id, profile_id) WHERE events.id = v.id",
            (event_ids, profile_ids))
        return
    conn.exec_driver_sql("UPDATE events SET profile_id = ?, pending = 0 WHERE id = ?",
                         [(profile_id, event_id) for event_id, profile_id in attributions])


_READ_PENDING = "SELECT id, source_id, message_id, type, event, {times}, payload FROM events WHERE pending ORDER BY id "
_SQLITE_READ_PENDING = _READ_PENDING.format(times="timestamp, received_at") + "LIMIT ?"
# Times as naive UTC: psycopg builds time zone aware datetimes several times slower.
_PG_READ_PENDING = _READ_PENDING.format(times="timestamp AT TIME ZONE 'UTC', received_at AT TIME ZONE 'UTC'") + (
    "LIMIT %s FOR UPDATE SKIP LOCKED")


def read_pending(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` pending events, oldest first, as row dicts. On PostgreSQL they stay locked
    until commit, and rows another follower holds are skipped."""
    postgresql = conn.dialect.name == "postgresql"
    rows = conn.exec_driver_sql(_PG_READ_PENDING if postgresql else _SQLITE_READ_PENDING, (limit,)).all()
    to_time = _naive_utc if postgresql else _sqlite_time
    to_payload = _parsed if postgresql else orjson.loads  # psycopg parses jsonb itself
    return [
        {"id": event_id, "source_id": source_id, "message_id": message_id, "type": kind, "event": event,
         "timestamp": to_time(timestamp), "received_at": to_time(received_at), "payload": to_payload(payload)}
        for event_id, source_id, message_id, kind, event, timestamp, received_at, payload in rows
    ]


def _naive_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _parsed(value: Any) -> Any:
    return value


def _sqlite_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
