"""Durable bulk ingestion: one transaction and one bulk insert per call, duplicates ignored."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Insert
from sqlalchemy.dialects import postgresql, sqlite

from cdp.events.schemas import Envelope, IngestResult, Rejection
from cdp.events.validate import prepare_message
from cdp.store.tables import events, quarantine

# Real-time side effects of live traffic (event-triggered audiences, journeys). Imports run with
# ``live=False`` so that replaying last year's history does not fire this morning's campaigns.
LiveHook = Callable[[Connection, int, list[dict[str, Any]]], None]
LIVE_HOOKS: list[LiveHook] = []


def ingest(
    conn: Connection,
    *,
    source_id: int,
    messages: Iterable[Any],
    envelope: Envelope,
    max_message_bytes: int,
    implied_type: str | None = None,
    live: bool = True,
) -> IngestResult:
    """Validate ``messages``; store valid ones (idempotent on messageId), quarantine the rest.

    Runs inside the caller's transaction: when it commits, every accepted message is durable.
    """
    rows: list[dict[str, Any]] = []
    result = IngestResult()
    for index, message in enumerate(messages):
        prepared = prepare_message(message, envelope, max_bytes=max_message_bytes, implied_type=implied_type)
        if isinstance(prepared, Rejection):
            result.rejections.append(replace(prepared, index=index))
        else:
            prepared["source_id"] = source_id
            rows.append(prepared)
    store_rows(conn, rows)
    store_rejections(conn, source_id=source_id, rejections=result.rejections, envelope=envelope)
    result.accepted = len(rows)
    result.quarantined = len(result.rejections)
    if live and rows:
        for hook in LIVE_HOOKS:
            hook(conn, source_id, rows)
    return result


def store_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert event rows in one statement; a (source, messageId) already stored is skipped."""
    if rows:
        conn.execute(insert_ignoring_duplicates(conn), rows)


def insert_ignoring_duplicates(conn: Connection) -> Insert:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(events).on_conflict_do_nothing(index_elements=["source_id", "message_id"])


def store_rejections(
    conn: Connection, *, source_id: int, rejections: list[Rejection], envelope: Envelope
) -> None:
    if rejections:
        conn.execute(
            quarantine.insert(),
            [
                {
                    "source_id": source_id,
                    "message_id": r.message_id,
                    "code": r.code,
                    "reason": r.reason,
                    "received_at": envelope.received_at,
                    "sent_at": envelope.sent_at,
                    "payload": r.message,
                }
                for r in rejections
            ],
        )
