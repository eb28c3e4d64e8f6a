"""Audience definitions: saved by API or CLI, versioned, read in the order their conditions need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from graphlib import CycleError, TopologicalSorter
from typing import Any

from sqlalchemy import Connection, func, select, update

from cdp.audiences.schemas import AudienceDefinition, referenced_audiences
from cdp.errors import InvalidInput, NotFound
from cdp.store.tables import audience_history, audience_members, audience_versions, audiences, destinations
from cdp.store.versioned import save_version


@dataclass(frozen=True)
class StoredAudience:
    id: int
    key: str
    version: int
    definition: AudienceDefinition
    created_at: datetime
    updated_at: datetime
    last_computed_at: datetime | None

    def as_json(self, *, size: int | None = None) -> dict[str, Any]:
        return {**self.definition.model_dump(mode="json", by_alias=True), "name": self.definition.title,
                "id": self.id, "version": self.version, "size": size, "created_at": self.created_at,
                "updated_at": self.updated_at, "last_computed_at": self.last_computed_at}


def save_audience(conn: Connection, *, definition: AudienceDefinition, now: datetime) -> tuple[StoredAudience, str]:
    """Create an audience or give it a new version; returns it and ``created``, ``changed`` or ``unchanged``.

    Its membership is not computed here: ``cdp.audiences.membership.recompute`` does that.
    """
    known = {stored.key: stored for stored in list_audiences(conn)}
    _check_references(definition, known)
    check_destinations(conn, definition.destinations)
    document = definition.model_dump(mode="json", by_alias=True)
    previous = known.get(definition.key)
    if previous is not None and previous.definition == definition:
        return previous, "unchanged"
    save_version(conn, table=audiences, versions=audience_versions, owner="audience_id", key=definition.key,
                 name=definition.title, document=document, now=now,
                 previous=None if previous is None else (previous.id, previous.version))
    return get_audience(conn, key=definition.key), "created" if previous is None else "changed"


def list_audiences(conn: Connection) -> list[StoredAudience]:
    """Every audience, by key."""
    return [_stored(row) for row in conn.execute(select(audiences).order_by(audiences.c.key))]


def get_audience(conn: Connection, *, key: str) -> StoredAudience:
    """One audience by key, or ``NotFound``."""
    row = conn.execute(select(audiences).where(audiences.c.key == key)).first()
    if row is None:
        raise NotFound(f"no audience with key {key!r}")
    return _stored(row)


def membership_state(conn: Connection) -> tuple[Any, ...]:
    """Changes whenever a membership does (every entry and exit is recorded in the history), or an audience
    comes, goes or gets a new version: two index reads, so counts over every member can be kept meanwhile.
    An erasure removes a person's memberships with their history, so it shows at the next change."""
    newest = conn.execute(select(func.max(audience_history.c.id))).scalar()
    versions = conn.execute(select(audiences.c.id, audiences.c.version).order_by(audiences.c.id)).all()
    return newest, tuple(tuple(row) for row in versions)


def audience_sizes(conn: Connection) -> dict[int, int]:
    """Members now, by audience id."""
    query = select(audience_members.c.audience_id, func.count()).group_by(audience_members.c.audience_id)
    return dict(conn.execute(query).all())  # type: ignore[arg-type]


def shared_members(conn: Connection, *, audience_id: int) -> dict[int, int]:
    """Members this audience shares with each other audience that shares any, by that audience's id."""
    mine, other = audience_members.alias("mine"), audience_members.alias("other")
    query = (select(other.c.audience_id, func.count())
             .select_from(mine.join(other, other.c.profile_id == mine.c.profile_id))
             .where(mine.c.audience_id == audience_id, other.c.audience_id != audience_id)
             .group_by(other.c.audience_id))
    return dict(conn.execute(query).all())  # type: ignore[arg-type]


def dependency_order(stored: Sequence[StoredAudience]) -> list[StoredAudience]:
    """Audiences after those their conditions read, so one pass sees every membership up to date."""
    by_key = {audience.key: audience for audience in stored}
    graph = {key: referenced_audiences(audience.definition.condition) & by_key.keys() for key, audience in by_key.items()}
    return [by_key[key] for key in TopologicalSorter(graph).static_order()]


def mark_computed(conn: Connection, *, audience_id: int, as_of: datetime) -> None:
    conn.execute(update(audiences).where(audiences.c.id == audience_id).values(last_computed_at=as_of))


def _check_references(definition: AudienceDefinition, known: dict[str, StoredAudience]) -> None:
    graph = {key: referenced_audiences(stored.definition.condition) for key, stored in known.items()}
    graph[definition.key] = referenced_audiences(definition.condition)
    for key in sorted(graph[definition.key]):
        if key not in graph:
            raise InvalidInput(f"audience {definition.key!r}: no audience with key {key!r} to build on")
    try:
        TopologicalSorter(graph).prepare()
    except CycleError:
        raise InvalidInput(f"audience {definition.key!r}: its conditions would refer back to itself") from None


def check_destinations(conn: Connection, ids: Sequence[int]) -> None:
    found = set(conn.execute(select(destinations.c.id).where(destinations.c.id.in_(list(ids)))).scalars())
    missing = sorted(set(ids) - found)
    if missing:
        raise InvalidInput(f"no destination with id {missing[0]}")


def _stored(row: Any) -> StoredAudience:
    return StoredAudience(row.id, row.key, row.version, AudienceDefinition.model_validate(row.definition),
                          row.created_at, row.updated_at, row.last_computed_at)
