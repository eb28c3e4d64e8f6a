"""Trait changes and current traits. The newest *event time* wins, never the newest arrival:
a late or imported old identify can't overwrite a value set after it happened."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from cdp.store.rows import insert_rows
from cdp.store.tables import profile_traits, trait_changes

TRAIT_CLASSES = ("identify", "computed", "predicted", "audience")


def identify_traits(message: dict[str, Any]) -> dict[str, Any]:
    """``context.traits`` merged with ``traits``, the top-level ones winning (contract.md)."""
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    merged = dict(context.get("traits") or {}) if isinstance(context.get("traits"), dict) else {}
    if isinstance(message.get("traits"), dict):
        merged.update(message["traits"])
    return merged


def record_trait_changes(conn: Connection, changes: Sequence[dict[str, Any]]) -> None:
    """Append ``changes`` to the log and fold them into the current traits.

    Each change: ``profile_id, name, value, class, source_id, message_id, event_time, received_at``.
    """
    append_trait_changes(conn, changes)
    fold_into_current(conn, changes)


_CHANGE = ("profile_id", "name", "value", "class", "source_id", "message_id", "event_time", "received_at")
_CURRENT = ("profile_id", "name", "value", "class", "source_id", "event_time", "received_at")
# The newest event time wins, then the newest arrival (the rows of one call are deduplicated first:
# PostgreSQL refuses to update a row twice in one statement).
_NEWER = (
    "ON CONFLICT (profile_id, name) DO UPDATE SET value = excluded.value, class = excluded.class, "
    "source_id = excluded.source_id, event_time = excluded.event_time, received_at = excluded.received_at "
    "WHERE excluded.event_time > profile_traits.event_time "
    "OR (excluded.event_time = profile_traits.event_time AND excluded.received_at >= profile_traits.received_at)"
)


def append_trait_changes(conn: Connection, changes: Sequence[dict[str, Any]]) -> None:
    insert_rows(conn, trait_changes, _CHANGE, [[change[name] for name in _CHANGE] for change in changes])


def fold_into_current(conn: Connection, changes: Sequence[dict[str, Any]]) -> None:
    """Upsert the current traits with ``changes`` where they are newer (event time, then arrival)."""
    newest: dict[tuple[int, str], dict[str, Any]] = {}
    for change in changes:
        key = (change["profile_id"], change["name"])
        if key not in newest or _order(change) >= _order(newest[key]):
            newest[key] = change
    # In key order: two followers upserting the same profiles' traits queue behind each other, never deadlock.
    rows = [[newest[key][name] for name in _CURRENT] for key in sorted(newest)]
    insert_rows(conn, profile_traits, _CURRENT, rows, suffix=_NEWER)


def write_trait_values(
    conn: Connection, *, name: str, values: Mapping[int, Any], trait_class: str, event_time: datetime,
    received_at: datetime,
) -> int:
    """Set trait ``name`` to ``values[profile_id]`` on many profiles at once (a model's write-back),
    logging a change only where the current value differs; returns the changes written."""
    if trait_class not in TRAIT_CLASSES:
        raise ValueError(f"unknown trait class {trait_class!r}")
    current = trait_values(conn, name=name)
    changes = [
        {"profile_id": profile_id, "name": name, "value": value, "class": trait_class, "source_id": None,
         "message_id": None, "event_time": event_time, "received_at": received_at}
        for profile_id, value in values.items()
        if profile_id not in current or current[profile_id] != value
    ]
    record_trait_changes(conn, changes)
    return len(changes)


def trait_values(conn: Connection, *, name: str) -> dict[int, Any]:
    """Profile id -> current value of trait ``name``, for every profile holding it."""
    return dict(conn.execute(
        select(profile_traits.c.profile_id, profile_traits.c.value).where(profile_traits.c.name == name)).all())


def _order(change: dict[str, Any]) -> tuple[datetime, datetime]:
    return change["event_time"], change["received_at"]


def rebuild_current_traits(conn: Connection, *, profile_ids: Sequence[int]) -> None:
    """Derive the current traits of ``profile_ids`` again from the log (after a merge or a split)."""
    conn.execute(delete(profile_traits).where(profile_traits.c.profile_id.in_(profile_ids)))
    rank = func.row_number().over(
        partition_by=(trait_changes.c.profile_id, trait_changes.c.name),
        order_by=(trait_changes.c.event_time.desc(), trait_changes.c.received_at.desc(), trait_changes.c.id.desc()),
    ).label("rank")
    ranked = select(
        trait_changes.c.profile_id, trait_changes.c.name, trait_changes.c.value, trait_changes.c["class"],
        trait_changes.c.source_id, trait_changes.c.event_time, trait_changes.c.received_at, rank,
    ).where(trait_changes.c.profile_id.in_(profile_ids)).subquery()
    columns = ["profile_id", "name", "value", "class", "source_id", "event_time", "received_at"]
    conn.execute(
        insert(profile_traits).from_select(columns, select(*(ranked.c[c] for c in columns)).where(ranked.c.rank == 1))
    )


def current_traits(conn: Connection, *, profile_id: int, names: Sequence[str] | None = None) -> list[Any]:
    """Rows of ``profile_traits`` for one profile (name, value, class, source_id, event_time)."""
    query = select(profile_traits).where(profile_traits.c.profile_id == profile_id).order_by(profile_traits.c.name)
    if names:
        query = query.where(profile_traits.c.name.in_(list(names)))
    return conn.execute(query).all()
