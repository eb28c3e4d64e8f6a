"""Who is in an audience: a batch over every profile, or the profiles live events just touched.

Both run the same SQL (``compile``); a change of membership is one transaction writing the member
row, its entered / exited history, the profile's ``audience`` trait (what the Profile API reads)
and, when ``deliver``, the messages of the audience's destinations in the outbox.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from cdp.audiences.compile import ConditionSql
from cdp.audiences.service import StoredAudience, dependency_order, list_audiences, mark_computed
from cdp.audiences.sync import audience_messages, profile_identifiers
from cdp.computed.compute import id_chunks
from cdp.destinations.outbox import enqueue
from cdp.identity.schemas import USERS
from cdp.profiles.traits import record_trait_changes
from cdp.store.tables import audience_history, audience_members, profiles

CHUNK = 1000
SAMPLE = 10


@dataclass(frozen=True)
class Changes:
    key: str
    size: int | None  # members after a batch over every profile; None for a partial one
    entered: int
    exited: int


@dataclass(frozen=True)
class Preview:
    size: int
    sample: list[dict[str, Any]]  # profile_id and its user_id / anonymous_id / email when known


def recompute(
    conn: Connection, *, keys: Sequence[str] = (), as_of: datetime, deliver: bool = True
) -> list[Changes]:
    """Evaluate audiences (all when no keys) over every profile as of ``as_of``; write what changed.

    ``deliver=False`` (a ``--backfill`` import) records the changes without sending them anywhere.
    """
    stored = dependency_order(list_audiences(conn))
    wanted = set(keys) or {audience.key for audience in stored}
    ids = {audience.key: audience.id for audience in stored}
    results = []
    for audience in (a for a in stored if a.key in wanted):
        results.append(_evaluate(conn, audience, ids, as_of=as_of, profile_ids=None, deliver=deliver))
        mark_computed(conn, audience_id=audience.id, as_of=as_of)
    return results


def refresh_profiles(
    conn: Connection, *, profile_ids: Collection[int], now: datetime, deliver: bool = True
) -> list[Changes]:
    """Evaluate every audience for these profiles only: after their events or traits changed."""
    if not profile_ids:
        return []
    stored = dependency_order(list_audiences(conn))
    ids = {audience.key: audience.id for audience in stored}
    return [_evaluate(conn, audience, ids, as_of=now, profile_ids=profile_ids, deliver=deliver) for audience in stored]


def on_live_events(conn: Connection, _source_id: int, rows: list[dict[str, Any]]) -> None:
    """The live hook (``cdp.events.ingest.LIVE_HOOKS``): the event's profiles enter or leave audiences now."""
    touched = {row["profile_id"] for row in rows if row.get("profile_id") is not None}
    refresh_profiles(conn, profile_ids=touched, now=datetime.now(UTC))


def preview(conn: Connection, *, condition: Any, as_of: datetime) -> Preview:
    """Size and a sample of the profiles a condition holds for now, without saving anything."""
    ids = {audience.key: audience.id for audience in list_audiences(conn)}
    matching = _members_query(conn, condition, ids, as_of).subquery()
    size = conn.execute(select(func.count()).select_from(matching)).scalar_one()
    sample = list(conn.execute(select(matching.c.id).order_by(matching.c.id).limit(SAMPLE)).scalars())
    known = profile_identifiers(conn, sample)
    return Preview(size, [{"profile_id": pid, **known.get(pid, {})} for pid in sample])


def members_of(conn: Connection, *, audience_id: int, limit: int, after: int = 0) -> list[Any]:
    """A page of members (profile_id, entered_at) by profile id."""
    return conn.execute(
        select(audience_members.c.profile_id, audience_members.c.entered_at)
        .where(audience_members.c.audience_id == audience_id, audience_members.c.profile_id > after)
        .order_by(audience_members.c.profile_id).limit(limit)
    ).all()


def history_of(conn: Connection, *, profile_id: int) -> list[Any]:
    """A profile's entered / exited changes, oldest first."""
    return conn.execute(
        select(audience_history).where(audience_history.c.profile_id == profile_id).order_by(audience_history.c.id)
    ).all()


def _members_query(conn: Connection, condition: Any, ids: dict[str, int], as_of: datetime):  # type: ignore[no-untyped-def]
    compile_ = ConditionSql(conn.dialect.name, as_of=as_of, audience_ids=ids)
    return select(profiles.c.id).where(
        profiles.c.entity == USERS, profiles.c.merged_into.is_(None), compile_(condition, profiles.c.id))


def _evaluate(
    conn: Connection, audience: StoredAudience, ids: dict[str, int], *, as_of: datetime,
    profile_ids: Collection[int] | None, deliver: bool,
) -> Changes:
    query = _members_query(conn, audience.definition.condition, ids, as_of)
    current = select(audience_members.c.profile_id).where(audience_members.c.audience_id == audience.id)
    now_in: set[int] = set()
    was_in: set[int] = set()
    for chunk in id_chunks(profile_ids):
        restrict = (lambda q, column: q) if chunk is None else (lambda q, column: q.where(column.in_(chunk)))
        now_in.update(conn.execute(restrict(query, profiles.c.id)).scalars())
        was_in.update(conn.execute(restrict(current, audience_members.c.profile_id)).scalars())
    entered = _enter(conn, audience.id, sorted(now_in - was_in), as_of)
    exited = _exit(conn, audience.id, sorted(was_in - now_in))
    _record(conn, audience, entered, exited, as_of=as_of, deliver=deliver)
    return Changes(audience.key, len(now_in) if profile_ids is None else None, len(entered), len(exited))


def _enter(conn: Connection, audience_id: int, profile_ids: list[int], at: datetime) -> list[int]:
    """Insert members; returns those that were not members already (a concurrent writer may have been first)."""
    entered: list[int] = []
    for start in range(0, len(profile_ids), CHUNK):
        chunk = profile_ids[start : start + CHUNK]
        taken = set(conn.execute(select(audience_members.c.profile_id).where(
            audience_members.c.audience_id == audience_id, audience_members.c.profile_id.in_(chunk))).scalars())
        fresh = [pid for pid in chunk if pid not in taken]
        if fresh:
            conn.execute(insert(audience_members), [
                {"audience_id": audience_id, "profile_id": pid, "entered_at": at} for pid in fresh])
        entered += fresh
    return entered


def _exit(conn: Connection, audience_id: int, profile_ids: list[int]) -> list[int]:
    exited: list[int] = []
    for start in range(0, len(profile_ids), CHUNK):
        chunk = profile_ids[start : start + CHUNK]
        exited += conn.execute(delete(audience_members).where(
            audience_members.c.audience_id == audience_id, audience_members.c.profile_id.in_(chunk),
        ).returning(audience_members.c.profile_id)).scalars()
    return exited


def _record(
    conn: Connection, audience: StoredAudience, entered: list[int], exited: list[int], *, as_of: datetime, deliver: bool
) -> None:
    changes = [(pid, "entered") for pid in entered] + [(pid, "exited") for pid in exited]
    for start in range(0, len(changes), CHUNK):
        chunk = changes[start : start + CHUNK]
        history_ids = conn.execute(insert(audience_history).returning(audience_history.c.id, sort_by_parameter_order=True), [
            {"audience_id": audience.id, "profile_id": pid, "change": change, "version": audience.version, "at": as_of}
            for pid, change in chunk]).scalars().all()
        record_trait_changes(conn, [
            {"profile_id": pid, "name": audience.key, "value": change == "entered", "class": "audience",
             "source_id": None, "message_id": None, "event_time": as_of, "received_at": as_of}
            for pid, change in chunk])
        if deliver and audience.definition.destinations:
            messages = audience_messages(conn, audience, list(zip(history_ids, chunk, strict=True)), at=as_of)
            enqueue(conn, destination_ids=audience.definition.destinations, messages=messages, now=as_of)

