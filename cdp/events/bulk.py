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
from cdp.store.types import dumps_json, id_list, sqlite_datetime

_COLUMNS = ("source_id", "message_id", "type", "event", "user_id", "anonymous_id", "timestamp",
            "original_timestamp", "sent_at", "received_at", "payload", "profile_id", "pending")
_ON_CONFLICT = "ON CONFLICT (message_id, source_id) DO NOTHING"


def insert_event_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert ``events`` rows (dicts keyed by column; ``profile_id`` and ``pending`` optional).

    A (source, messageId) already stored is skipped. Each row stored gets its ``id``.
    """
    if not rows:
        return
    # The statement is cdp.store.rows'; the parameters are built here, where the rows' shape is known.
    if conn.dialect.name == "postgresql":
        statement = insert_statement("postgresql", events, _COLUMNS, _ON_CONFLICT + " RETURNING message_id, id")
        columns = [[row.get(name) for row in rows] for name in _COLUMNS]
        columns[_COLUMNS.index("payload")] = [_payload_text(row) for row in rows]
        columns[_COLUMNS.index("pending")] = [bool(row.get("pending")) for row in rows]
        stored = dict(conn.exec_driver_sql(statement, tuple(columns)).all())
        for row in rows:  # a messageId repeated in the request: the first of them was stored
            if (event_id := stored.pop(row["message_id"], None)) is not None:
                row["id"] = event_id
        return
    statement = insert_statement("sqlite", events, _COLUMNS, _ON_CONFLICT)
    if (stored := conn.exec_driver_sql(statement, _sqlite_params(rows)).rowcount) <= 0:
        return
    # One writer at a time: the rows stored now took the ``stored`` ids up to the last one.
    last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
    if stored == len(rows):
        for event_id, row in enumerate(rows, start=last - len(rows) + 1):
            row["id"] = event_id
        return
    new = dict(conn.exec_driver_sql("SELECT message_id, id FROM events WHERE id > ? AND id <= ?",
                                    (last - stored, last)).all())
    for row in rows:  # as on PostgreSQL, the first of a messageId repeated in the request was stored
        if (event_id := new.pop(row["message_id"], None)) is not None:
            row["id"] = event_id


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


_READ = "SELECT e.id, e.source_id, e.message_id, e.type, e.event, {times}, e.payload FROM events AS e "
_SQLITE_READ = _READ.format(times="e.timestamp, e.received_at")
# Times as naive UTC: psycopg builds time zone aware datetimes several times slower.
_PG_READ = _READ.format(times="e.timestamp AT TIME ZONE 'UTC', e.received_at AT TIME ZONE 'UTC'")
# On PostgreSQL joined on the unnested ids, not ``id = ANY(array)`` (see cdp.identity.resolve's profile locks).
_PG_AMONG = "JOIN unnest(%b::bigint[]) AS k(id) ON e.id = k.id WHERE e.pending"
_SQLITE_AMONG = "WHERE e.pending AND e.id IN (SELECT value FROM json_each(?))"
_READ_PENDING = {
    "sqlite": _SQLITE_READ + "WHERE e.pending ORDER BY e.id LIMIT ?",
    "postgresql": _PG_READ + "WHERE e.pending ORDER BY e.id LIMIT %s FOR UPDATE SKIP LOCKED",
}
_READ_PENDING_AMONG = {
    "sqlite": _SQLITE_READ + _SQLITE_AMONG + " ORDER BY e.id",
    "postgresql": _PG_READ + _PG_AMONG + " ORDER BY e.id",
}
_LOCK_PENDING_AMONG = {
    "sqlite": "SELECT e.id FROM events AS e " + _SQLITE_AMONG,
    "postgresql": "SELECT e.id FROM events AS e " + _PG_AMONG + " FOR UPDATE OF e SKIP LOCKED",
}


def read_pending(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` pending events, oldest first, as row dicts. On PostgreSQL rows another
    transaction holds are skipped, and in a transaction those read stay locked until it commits."""
    return _event_rows(conn, _READ_PENDING[conn.dialect.name], (limit,))


def read_pending_among(conn: Connection, ids: list[int]) -> list[dict[str, Any]]:
    """The events of ``ids`` that are still pending, as :func:`read_pending` reads them; no locks."""
    return _event_rows(conn, _READ_PENDING_AMONG[conn.dialect.name], (id_list(conn.dialect.name, ids),))


def lock_pending_among(conn: Connection, ids: list[int]) -> set[int]:
    """Which of ``ids`` are still pending. On PostgreSQL they stay locked until commit, and those
    another transaction holds are left out (it attributes or deletes them)."""
    dialect = conn.dialect.name
    return set(conn.exec_driver_sql(_LOCK_PENDING_AMONG[dialect], (id_list(dialect, ids),)).scalars())


def _event_rows(conn: Connection, statement: str, parameters: tuple[Any, ...]) -> list[dict[str, Any]]:
    postgresql = conn.dialect.name == "postgresql"
    rows = conn.exec_driver_sql(statement, parameters).all()
    to_time = _naive_utc if postgresql else _sqlite_time
    to_payload = _parsed if postgresql else orjson.loads  # psycopg parses jsonb itself
    return [
        pending_row(event_id, source_id, message_id, kind, event, to_time(timestamp), to_time(received_at),
                    to_payload(payload))
        for event_id, source_id, message_id, kind, event, timestamp, received_at, payload in rows
    ]


def pending_row(event_id: int, source_id: int, message_id: str, kind: str, event: str | None, timestamp: datetime,
                received_at: datetime, payload: Any) -> dict[str, Any]:
    """A pending event as attribution takes it, however it was read."""
    return {"id": event_id, "source_id": source_id, "message_id": message_id, "type": kind, "event": event,
            "timestamp": timestamp, "received_at": received_at, "payload": payload}


def _naive_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _parsed(value: Any) -> Any:
    return value


def _sqlite_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
