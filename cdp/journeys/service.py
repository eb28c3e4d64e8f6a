"""Journey definitions (saved by API or CLI, versioned like audiences) and the contact policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from cdp.audiences.service import check_destinations, list_audiences
from cdp.errors import InvalidInput, NotFound
from cdp.journeys.schemas import ContactPolicy, JourneyDefinition
from cdp.store.tables import contact_policy, journey_instances, journey_versions, journeys
from cdp.store.versioned import save_version

POLICY_ID = 1


@dataclass(frozen=True)
class StoredJourney:
    id: int
    key: str
    version: int
    definition: JourneyDefinition
    created_at: datetime
    updated_at: datetime

    def as_json(self, *, active: int | None = None) -> dict[str, Any]:
        return {**self.definition.model_dump(mode="json", by_alias=True, exclude_none=True),
                "name": self.definition.title, "id": self.id, "version": self.version, "active": active,
                "created_at": self.created_at, "updated_at": self.updated_at}


def save_journey(conn: Connection, *, definition: JourneyDefinition, now: datetime) -> tuple[StoredJourney, str]:
    """Create a journey or give it a new version; returns it and ``created``, ``changed`` or ``unchanged``.

    Profiles already on their way finish on the version they entered.
    """
    known = {audience.key for audience in list_audiences(conn)}
    missing = sorted(definition.audiences() - known)
    if missing:
        raise InvalidInput(f"journey {definition.key!r}: no audience with key {missing[0]!r}")
    check_destinations(conn, sorted(definition.destinations()))
    document = definition.model_dump(mode="json", by_alias=True)
    row = conn.execute(select(journeys).where(journeys.c.key == definition.key)).first()
    if row is not None and _stored(row).definition == definition:
        return _stored(row), "unchanged"
    save_version(conn, table=journeys, versions=journey_versions, owner="journey_id", key=definition.key,
                 name=definition.title, document=document, now=now,
                 previous=None if row is None else (row.id, row.version))
    return get_journey(conn, key=definition.key), "created" if row is None else "changed"


def list_journeys(conn: Connection) -> list[StoredJourney]:
    """Every journey, by key."""
    return [_stored(row) for row in conn.execute(select(journeys).order_by(journeys.c.key))]


def get_journey(conn: Connection, *, key: str) -> StoredJourney:
    """One journey by key, or ``NotFound``."""
    row = conn.execute(select(journeys).where(journeys.c.key == key)).first()
    if row is None:
        raise NotFound(f"no journey with key {key!r}")
    return _stored(row)


def delete_journey(conn: Connection, *, key: str) -> None:
    """Remove a journey with its instances and send log: profiles on their way stop where they are."""
    get_journey(conn, key=key)
    conn.execute(delete(journeys).where(journeys.c.key == key))


def active_counts(conn: Connection) -> dict[int, int]:
    """Profiles on their way now, by journey id."""
    query = (select(journey_instances.c.journey_id, func.count()).where(journey_instances.c.status == "active")
             .group_by(journey_instances.c.journey_id))
    return dict(conn.execute(query).all())  # type: ignore[arg-type]


def definition_of(conn: Connection, *, journey: StoredJourney, version: int) -> JourneyDefinition:
    """The definition of one version of a journey (what its instances entered on)."""
    if version == journey.version:
        return journey.definition
    # Versions never change; a journey deleted and created again is told apart by its creation time.
    key = (conn.engine.url.render_as_string(), journey.id, journey.created_at, version)
    found = _versions.get(key)
    if found is None:
        document = conn.execute(select(journey_versions.c.definition).where(
            journey_versions.c.journey_id == journey.id, journey_versions.c.version == version)).scalar_one()
        found = _versions[key] = JourneyDefinition.model_validate(document)
    return found


_versions: dict[tuple[str, int, datetime, int], JourneyDefinition] = {}


def get_policy(conn: Connection) -> tuple[ContactPolicy, datetime | None]:
    """The contact policy and when it was set; an empty one (no caps, no quiet hours) until then."""
    row = conn.execute(select(contact_policy).where(contact_policy.c.id == POLICY_ID)).first()
    if row is None:
        return ContactPolicy(), None
    return ContactPolicy.model_validate(row.policy), row.updated_at


def set_policy(conn: Connection, *, policy: ContactPolicy, now: datetime) -> None:
    """Replace the contact policy; it applies to every send from now on."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(contact_policy).values(id=POLICY_ID, policy=policy.model_dump(mode="json"), updated_at=now)
    conn.execute(statement.on_conflict_do_update(index_elements=["id"], set_={
        "policy": statement.excluded.policy, "updated_at": statement.excluded.updated_at}))


def _stored(row: Any) -> StoredJourney:
    return StoredJourney(row.id, row.key, row.version, JourneyDefinition.model_validate(row.definition),
                         row.created_at, row.updated_at)
