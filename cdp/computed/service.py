"""Computed trait definitions: declared by API, CLI or a file; what ingestion keeps up to date."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from cdp.computed.schemas import ComputedTrait, parse_definitions
from cdp.errors import InvalidInput, NotFound
from cdp.store.cache import StoreCache
from cdp.store.tables import computed_traits, profile_traits, trait_changes

# How long an ingesting process keeps using the definitions it read: a new or changed definition
# reaches every process within this time (the next batch compute counts what arrived meanwhile).
INGEST_CACHE_SECONDS = 10.0
COMPUTE_LOCK = 727276
_ingest_cache: StoreCache[str, list[ComputedTrait]] = StoreCache(INGEST_CACHE_SECONDS)


@dataclass(frozen=True)
class StoredTrait:
    definition: ComputedTrait
    created_at: datetime
    updated_at: datetime
    last_computed_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {**self.definition.model_dump(mode="json"), "incremental": self.definition.incremental,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "last_computed_at": self.last_computed_at}


def define(conn: Connection, *, definition: ComputedTrait, now: datetime) -> tuple[StoredTrait, str]:
    """Create or replace a definition; returns it and ``created``, ``changed`` or ``unchanged``."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    document = definition.model_dump(mode="json")
    created = conn.execute(
        dialect.insert(computed_traits).on_conflict_do_nothing(index_elements=["name"]).values(
            name=definition.name, definition=document, created_at=now, updated_at=now).returning(computed_traits.c.id)
    ).first() is not None
    stored = get_definition(conn, name=definition.name)
    if created or stored.definition == definition:
        return stored, "created" if created else "unchanged"
    # Values of the old definition stay until the next compute; folding new events into them
    # would mix two definitions, so ingestion waits for that compute.
    conn.execute(update(computed_traits).where(computed_traits.c.name == definition.name).values(
        definition=document, updated_at=now, last_computed_at=None))
    _ingest_cache.forget()
    return get_definition(conn, name=definition.name), "changed"


def list_definitions(conn: Connection) -> list[StoredTrait]:
    """Every definition, by name."""
    return [_stored(row) for row in conn.execute(select(computed_traits).order_by(computed_traits.c.name))]


def get_definition(conn: Connection, *, name: str) -> StoredTrait:
    """One definition by name, or ``NotFound``."""
    row = conn.execute(select(computed_traits).where(computed_traits.c.name == name)).first()
    if row is None:
        raise NotFound(f"no computed trait named {name!r}")
    return _stored(row)


def definitions_named(conn: Connection, *, names: Sequence[str] = ()) -> list[ComputedTrait]:
    """The definitions with these names (all when none are given); an unknown name is ``NotFound``."""
    if not names:
        return [stored.definition for stored in list_definitions(conn)]
    return [get_definition(conn, name=name).definition for name in dict.fromkeys(names)]


def delete_definition(conn: Connection, *, name: str) -> int:
    """Remove a definition with its values and their history; returns how many profiles held a value."""
    get_definition(conn, name=name)
    conn.execute(delete(computed_traits).where(computed_traits.c.name == name))
    # The history goes too: a merge rebuilds current traits from it and would bring the trait back.
    conn.execute(delete(trait_changes).where(trait_changes.c.name == name, trait_changes.c["class"] == "computed"))
    removed = conn.execute(
        delete(profile_traits).where(profile_traits.c.name == name, profile_traits.c["class"] == "computed")
    ).rowcount
    _ingest_cache.forget()
    return removed


def mark_computed(conn: Connection, *, names: Sequence[str], as_of: datetime) -> None:
    """Record a full compute; from now on ingestion keeps the incremental ones up to date."""
    conn.execute(update(computed_traits).where(computed_traits.c.name.in_(list(names))).values(last_computed_at=as_of))
    _ingest_cache.forget()


def load_definitions_file(path: Path) -> list[ComputedTrait]:
    """Definitions from a JSON file holding one definition or a list of them."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise InvalidInput(f"no such computed traits file: {path}") from None
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"{path} is not JSON: {error}") from None
    try:
        return parse_definitions(data)
    except InvalidInput as error:
        raise InvalidInput(f"{path}: {error.message}") from None


def sync_from_file(conn: Connection, *, path: Path, now: datetime) -> list[str]:
    """Declare the file's definitions (``CDP_COMPUTED_TRAITS_FILE``); others, made by API or CLI, stay."""
    definitions = load_definitions_file(path)
    for definition in definitions:
        define(conn, definition=definition, now=now)
    return [d.name for d in definitions]


def definitions_for_ingest(conn: Connection) -> list[ComputedTrait]:
    """Definitions computed at least once, read at most every ``INGEST_CACHE_SECONDS`` per process.

    When there are some, also takes the shared side of the compute lock (see ``lock_computations``),
    before ingestion holds any row lock.
    """
    definitions = _ingest_cache.get(conn, "computed", lambda: [
        ComputedTrait.model_validate(document) for document in conn.execute(
            select(computed_traits.c.definition).where(computed_traits.c.last_computed_at.is_not(None))
            .order_by(computed_traits.c.name)
        ).scalars()
    ])
    if definitions:
        lock_computations(conn, exclusive=False)
    return definitions


def lock_computations(conn: Connection, *, exclusive: bool) -> bool:
    """Ingestion (shared) and a compute's writes (exclusive) take turns, until the transaction ends.

    A compute must not overwrite a value that an ingestion folded new events into after the
    compute read the events. Returns False on SQLite, which needs nothing: one writer at a time.
    """
    if conn.dialect.name != "postgresql":
        return False
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    conn.execute(text(f"SELECT {function}(:key)"), {"key": COMPUTE_LOCK})
    return True


def _stored(row: Any) -> StoredTrait:
    return StoredTrait(ComputedTrait.model_validate(row.definition), row.created_at, row.updated_at,
                       row.last_computed_at)
