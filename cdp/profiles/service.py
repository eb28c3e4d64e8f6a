"""Reading profiles: the data behind the Profile API, without HTTP."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, func, or_, select

from cdp.errors import InvalidInput, NotFound
from cdp.events.timestamps import BadTimestamp, parse_timestamp
from cdp.identity.service import find_profile
from cdp.profiles.traits import TRAIT_CLASSES
from cdp.store.tables import events, identities, profile_traits, profiles, sources


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next: str | None  # opaque cursor of the following page, None on the last


def resolve_identifier(conn: Connection, identifier: str, *, entity: str) -> int:
    """``type:value`` (``user_id:u1``, ``email:a@b.c``, ``profile_id:42``, any external id type) -> live profile."""
    kind, sep, value = identifier.partition(":")
    if not sep or not kind or not value:
        raise InvalidInput(f"identifier must be type:value (e.g. user_id:u1), got {identifier!r}",
                           code="invalid_request_error")
    if kind == "email":
        value = value.strip().lower()  # emails are stored lowercased
    profile_id = find_profile(conn, type=kind, value=value, entity=entity)
    if profile_id is None:
        raise NotFound("Profile was not found.")
    return profile_id


PERSON_ID_TYPES = ("user_id", "anonymous_id", "email", "profile_id")


def find_person(conn: Connection, identifier: str) -> int | None:
    """``user_id:…``, ``anonymous_id:…``, ``email:…``, ``profile_id:…`` or a bare user id -> the live
    user profile, or ``None`` for someone the identity graph doesn't know (no error: callers fall back)."""
    kind, sep, value = identifier.partition(":")
    if not sep or kind not in PERSON_ID_TYPES:
        kind, value = "user_id", identifier
    if not value:
        raise InvalidInput("empty identifier", code="invalid_request_error")
    if kind == "email":
        value = value.strip().lower()  # emails are stored lowercased
    return find_profile(conn, type=kind, value=value)


def traits_page(
    conn: Connection, *, profile_id: int, include: Sequence[str] = (), classes: Sequence[str] = (),
    limit: int, after: str | None = None,
) -> Page:
    """Current traits ordered by name; ``after`` is the cursor (a trait name) of the previous page."""
    unknown = sorted(set(classes) - set(TRAIT_CLASSES))
    if unknown:
        raise InvalidInput(f"unknown trait class {', '.join(unknown)}; use {', '.join(TRAIT_CLASSES)}",
                           code="invalid_request_error")
    query = (
        select(profile_traits.c.name, profile_traits.c.value, profile_traits.c["class"],
               profile_traits.c.event_time, sources.c.name.label("source"))
        .outerjoin(sources, sources.c.id == profile_traits.c.source_id)
        .where(profile_traits.c.profile_id == profile_id)
        .order_by(profile_traits.c.name)
        .limit(limit + 1)
    )
    if include:
        query = query.where(profile_traits.c.name.in_(list(include)))
    if classes:
        query = query.where(profile_traits.c["class"].in_(list(classes)))
    if after:
        query = query.where(profile_traits.c.name > _decode(after, "name"))
    rows = conn.execute(query).all()
    return Page(rows[:limit], _encode({"name": rows[limit - 1].name}) if len(rows) > limit else None)


def events_page(
    conn: Connection, *, profile_id: int, limit: int, before: str | None = None, start: str | None = None,
    end: str | None = None, include: Sequence[str] = (), exclude: Sequence[str] = (),
) -> Page:
    """Events newest first (event time), ``before`` being the previous page's cursor."""
    query = (
        select(events.c.id, events.c.message_id, events.c.source_id, events.c.type, events.c.event, events.c.user_id,
               events.c.anonymous_id, events.c.timestamp, events.c.received_at, events.c.payload)
        .where(events.c.profile_id == profile_id)
        .order_by(events.c.timestamp.desc(), events.c.id.desc())
        .limit(limit + 1)
    )
    if start:
        query = query.where(events.c.timestamp >= _time(start, "start"))
    if end:
        query = query.where(events.c.timestamp <= _time(end, "end"))
    if include:
        query = query.where(events.c.event.in_(list(include)))
    if exclude:
        query = query.where(or_(events.c.event.is_(None), events.c.event.not_in(list(exclude))))
    if before:
        cursor = _decode(before, "timestamp", "id")
        at = _time(cursor["timestamp"], "next")
        query = query.where(or_(events.c.timestamp < at, and_(events.c.timestamp == at, events.c.id < int(cursor["id"]))))
    rows = conn.execute(query).all()
    last = rows[limit - 1] if len(rows) > limit else None
    return Page(rows[:limit], _encode({"timestamp": last.timestamp.isoformat(), "id": last.id}) if last else None)


def external_ids_page(
    conn: Connection, *, profile_id: int, include: Sequence[str] = (), limit: int, after: str | None = None
) -> Page:
    query = (
        select(identities.c.id, identities.c.type, identities.c.value, identities.c.source_id,
               identities.c.first_message_id, identities.c.created_at)
        .where(identities.c.profile_id == profile_id)
        .order_by(identities.c.id)
        .limit(limit + 1)
    )
    if include:
        query = query.where(identities.c.type.in_(list(include)))
    if after:
        query = query.where(identities.c.id > int(_decode(after, "id")))
    rows = conn.execute(query).all()
    return Page(rows[:limit], _encode({"id": rows[limit - 1].id}) if len(rows) > limit else None)


def audiences_of(conn: Connection, *, profile_id: int) -> list[Any]:
    """Audiences the profile is in now: its ``audience`` traits whose value is true."""
    rows = conn.execute(
        select(profile_traits.c.name, profile_traits.c.value, profile_traits.c.event_time)
        .where(profile_traits.c.profile_id == profile_id, profile_traits.c["class"] == "audience")
        .order_by(profile_traits.c.name)
    ).all()
    return [row for row in rows if row.value is True]


def metadata_of(conn: Connection, *, profile_id: int) -> dict[str, Any]:
    """Segment's metadata: creation, last update, first and last message."""
    profile = conn.execute(select(profiles).where(profiles.c.id == profile_id)).one()
    last = conn.execute(
        select(events.c.message_id, events.c.source_id, events.c.received_at)
        .where(events.c.profile_id == profile_id).order_by(events.c.timestamp.desc(), events.c.id.desc()).limit(1)
    ).first()
    last_trait = conn.execute(
        select(func.max(profile_traits.c.received_at)).where(profile_traits.c.profile_id == profile_id)
    ).scalar()
    updated = max([t for t in (profile.updated_at, last.received_at if last else None, last_trait) if t is not None])
    return {
        "created_at": profile.created_at,
        "updated_at": updated,
        "expires_at": None,
        "first_message_id": profile.first_message_id,
        "first_source_id": profile.first_source_id,
        "last_message_id": last.message_id if last else None,
        "last_source_id": last.source_id if last else None,
    }


def _encode(cursor: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(cursor)).decode().rstrip("=")


def _decode(cursor: str, *keys: str) -> Any:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not all(key in value for key in keys):
            raise ValueError
    except (ValueError, TypeError):
        raise InvalidInput("next: not a cursor from a previous page", code="invalid_request_error") from None
    return value[keys[0]] if len(keys) == 1 else value


def _time(value: str, field: str) -> datetime:
    try:
        parsed = parse_timestamp(value, field)
    except BadTimestamp as exc:
        raise InvalidInput(str(exc), code="invalid_request_error") from None
    assert parsed is not None
    return parsed


def profile_counts(conn: Connection) -> tuple[int, int]:
    """Live user profiles, and how many of them carry a user id (identified)."""
    live = (profiles.c.entity == "users") & profiles.c.merged_into.is_(None)
    total = conn.execute(select(func.count()).select_from(profiles).where(live)).scalar_one()
    identified = conn.execute(
        select(func.count(identities.c.profile_id.distinct()))
        .where(identities.c.type == "user_id", identities.c.entity == "users")).scalar_one()
    return total, identified

