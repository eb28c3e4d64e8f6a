"""Prediction definitions in the store: created by API or CLI, one row per version, the newest in force."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from cdp.errors import NotFound
from cdp.predictions.schemas import PredictionDefinition
from cdp.store.tables import predictions


@dataclass(frozen=True)
class StoredPrediction:
    definition: PredictionDefinition  # its ``version`` is the stored one
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {**self.definition.model_dump(mode="json"), "task": self.definition.task, "created_at": self.created_at}


def create_prediction(conn: Connection, *, definition: PredictionDefinition, now: datetime) -> tuple[StoredPrediction, str]:
    """Store a definition as the key's next version; returns it and ``created``, ``changed`` or ``unchanged``."""
    newest = conn.execute(select(func.max(predictions.c.version)).where(predictions.c.key == definition.key)).scalar()
    if newest is not None:
        current = get_prediction(conn, key=definition.key)
        if _same(current.definition, definition):
            return current, "unchanged"
    version = (newest or 0) + 1
    versioned = definition.model_copy(update={"version": version})
    conn.execute(insert(predictions).values(key=definition.key, version=version,
                                            definition=versioned.model_dump(mode="json"), created_at=now))
    return StoredPrediction(versioned, now), "created" if newest is None else "changed"


def get_prediction(conn: Connection, *, key: str, version: int | None = None) -> StoredPrediction:
    """A definition by key: its newest version, or the one asked for; ``NotFound`` otherwise."""
    query = select(predictions).where(predictions.c.key == key).order_by(predictions.c.version.desc()).limit(1)
    if version is not None:
        query = query.where(predictions.c.version == version)
    row = conn.execute(query).first()
    if row is None:
        which = f"version {version} of " if version is not None else ""
        raise NotFound(f"no {which}prediction {key!r}")
    return _stored(row)


def list_predictions(conn: Connection) -> list[StoredPrediction]:
    """The newest version of every definition, by key."""
    newest = select(predictions.c.key, func.max(predictions.c.version).label("version")).group_by(predictions.c.key).subquery()
    rows = conn.execute(
        select(predictions).join(newest, (predictions.c.key == newest.c.key) & (predictions.c.version == newest.c.version))
        .order_by(predictions.c.key)
    )
    return [_stored(row) for row in rows]


def _same(a: PredictionDefinition, b: PredictionDefinition) -> bool:
    return a.model_dump(exclude={"version"}) == b.model_dump(exclude={"version"})


def _stored(row: Any) -> StoredPrediction:
    return StoredPrediction(PredictionDefinition.model_validate(row.definition), row.created_at)
