"""Who is in an audience: a batch over every profile, or the profiles live events just touched.

Both run the same SQL (``compile``); a change of membership is one transaction writing the member
row, its entered / exited history, the profile's ``audience`` trait (what the Profile API reads)
and, when ``deliver``, the messages of the audience's destinations in the outbox.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from cdp.audiences.compile import ConditionSql
from cdp.audiences.schemas import (
    AudienceCondition,
    EventCondition,
    PredictionCondition,
    TraitCondition,
    children,
    referenced_audiences,
)
from cdp.audiences.service import StoredAudience, dependency_order, list_audiences, mark_computed
from cdp.audiences.sync import audience_messages, profile_identifiers
from cdp.computed.compute import id_chunks
from cdp.computed.service import definitions_for_ingest
from cdp.destinations.outbox import enqueue
from cdp.identity.schemas import USERS
from cdp.profiles.traits import identify_traits, record_trait_changes
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
        results.append(_evaluate(conn, audience, ids, as_of=as_of, deliver=deliver))
        mark_computed(conn, audience_id=audience.id, as_of=as_of)
    return results


def refresh_profiles(
    conn: Connection, *, profile_ids: Collection[int], now: datetime, deliver: bool = True
) -> list[Changes]:
    """Evaluate every audience for these profiles only: after their events or traits changed."""
    return _refresh(conn, {pid: {EVERYTHING} for pid in profile_ids}, now=now, deliver=deliver)


def on_live_events(conn: Connection, _source_id: int, rows: list[dict[str, Any]]) -> None:
    """The live hook (``cdp.events.ingest.LIVE_HOOKS``): the event's profiles enter or leave audiences now.

    Only audiences whose conditions read what these events changed are evaluated: a trait condition
    for the profiles whose trait of that name changed, an event condition for those that sent such an
    event. So a membership that only time changes (a window that lapses) waits for the next event it
    reads, or for the scheduled batch recomputation, which evaluates everything.
    """
    computed = [("trait", definition.name) for definition in definitions_for_ingest(conn)]
    changed: dict[int, set[Read]] = defaultdict(set)
    for row in rows:
        pid = row.get("profile_id")
        if pid is None:
            continue
        marks = changed[pid]
        if row.get("merged"):  # the profile took over another's events and traits
            marks.add(EVERYTHING)
        marks.update((("event", row["type"], row.get("event")), ("event", row["type"], None), *computed))
        if row["type"] == "identify":
            marks.update(("trait", name) for name in identify_traits(row["payload"]))
    _refresh(conn, changed, now=datetime.now(UTC), deliver=True)


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
    conn: Connection, audience: StoredAudience, ids: dict[str, int], *, as_of: datetime, deliver: bool
) -> Changes:
    """One audience over every profile."""
    now_in = set(conn.execute(_members_query(conn, audience.definition.condition, ids, as_of)).scalars())
    was_in = set(conn.execute(
        select(audience_members.c.profile_id).where(audience_members.c.audience_id == audience.id)).scalars())
    entered = _enter(conn, audience.id, sorted(now_in - was_in), as_of)
    exited = _exit(conn, audience.id, sorted(was_in - now_in))
    _record(conn, audience, entered, exited, as_of=as_of, deliver=deliver)
    return Changes(audience.key, len(now_in), len(entered), len(exited))


# What a condition reads: ("trait", name), ("event", call, name or None for any), or everything.
Read = tuple[str, ...]
EVERYTHING: Read = ("everything",)


def condition_reads(condition: Any) -> frozenset[Read]:
    """What can change whether ``condition`` holds for a profile (besides time passing)."""
    if isinstance(condition, TraitCondition | PredictionCondition):
        return frozenset({("trait", condition.trait)})
    if isinstance(condition, EventCondition):
        return frozenset({("event", condition.call, condition.event)})
    if isinstance(condition, AudienceCondition):  # its members, and its trait of the same name
        return frozenset({("trait", condition.audience)})
    return frozenset().union(*(condition_reads(child) for child in children(condition)))


def _refresh(
    conn: Connection, changed: dict[int, set[Read]], *, now: datetime, deliver: bool
) -> list[Changes]:
    """Evaluate, for the profiles in ``changed``, the audiences reading what changed for them.

    One statement per level of audiences-of-audiences evaluates every such audience at once; a
    change of membership marks the audience's key as changed for the audiences after it.
    """
    if not changed:
        return []
    stored = dependency_order(list_audiences(conn))
    ids = {audience.key: audience.id for audience in stored}
    results: list[Changes] = []
    for level in _levels(stored):
        reads = {audience.id: condition_reads(audience.definition.condition) for audience in level}
        affected = {audience.id: [pid for pid, marks in changed.items()
                                  if EVERYTHING in marks or not marks.isdisjoint(reads[audience.id])]
                    for audience in level}
        due = [audience for audience in level if affected[audience.id]]
        if not due:
            continue
        profile_ids = set().union(*(affected[audience.id] for audience in due))
        now_in, was_in = _memberships(conn, due, ids, profile_ids, as_of=now)
        for audience in due:
            entered = _enter(conn, audience.id, sorted(now_in[audience.id] - was_in[audience.id]), now)
            exited = _exit(conn, audience.id, sorted(was_in[audience.id] - now_in[audience.id]))
            _record(conn, audience, entered, exited, as_of=now, deliver=deliver)
            for pid in (*entered, *exited):
                changed[pid].add(("trait", audience.key))
            results.append(Changes(audience.key, None, len(entered), len(exited)))
    return results


def _levels(ordered: list[StoredAudience]) -> list[list[StoredAudience]]:
    """Audiences in dependency order, grouped so that none reads another of its own group."""
    level_of: dict[str, int] = {}
    levels: list[list[StoredAudience]] = []
    for audience in ordered:
        level = 1 + max((level_of[key] for key in referenced_audiences(audience.definition.condition)
                         if key in level_of), default=-1)
        level_of[audience.key] = level
        if level == len(levels):
            levels.append([])
        levels[level].append(audience)
    return levels


def _memberships(
    conn: Connection, audiences: list[StoredAudience], ids: dict[str, int], profile_ids: Collection[int], *,
    as_of: datetime,
) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """Who of ``profile_ids`` each audience's condition holds for now, and who is a member: two reads per chunk."""
    compile_ = ConditionSql(conn.dialect.name, as_of=as_of, audience_ids=ids)
    columns = [compile_(audience.definition.condition, profiles.c.id) for audience in audiences]
    now_in: dict[int, set[int]] = {audience.id: set() for audience in audiences}
    was_in: dict[int, set[int]] = {audience.id: set() for audience in audiences}
    for chunk in id_chunks(profile_ids):
        query = select(profiles.c.id, *columns).where(
            profiles.c.id.in_(chunk), profiles.c.entity == USERS, profiles.c.merged_into.is_(None))
        for pid, *holds in conn.execute(query):
            for audience, held in zip(audiences, holds, strict=True):
                if held:
                    now_in[audience.id].add(pid)
        # Members by profile id alone: one merged away since leaves, as in a batch over every profile.
        members = select(audience_members.c.audience_id, audience_members.c.profile_id).where(
            audience_members.c.audience_id.in_(list(now_in)), audience_members.c.profile_id.in_(chunk))
        for audience_id, pid in conn.execute(members):
            was_in[audience_id].add(pid)
    return now_in, was_in


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

