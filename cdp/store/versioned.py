"""Definitions kept with every version (audiences, journeys): the current one in a table by key,
each saved one, never changed, in a versions table beside it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, update


def save_version(
    conn: Connection, *, table: Table, versions: Table, owner: str, key: str, name: str, document: dict[str, Any],
    previous: tuple[int, int] | None, now: datetime,
) -> None:
    """Insert ``key`` at version 1, or give ``previous`` (its id and version) the next one; either way
    the version is also kept in ``versions``, whose ``owner`` column refers to ``table``."""
    if previous is None:
        row_id = conn.execute(insert(table).values(
            key=key, name=name, version=1, definition=document, created_at=now, updated_at=now,
        ).returning(table.c.id)).scalar_one()
        version = 1
    else:
        row_id, version = previous[0], previous[1] + 1
        conn.execute(update(table).where(table.c.id == row_id).values(
            name=name, version=version, definition=document, updated_at=now))
    conn.execute(insert(versions).values({owner: row_id, "version": version, "definition": document,
                                          "created_at": now}))
