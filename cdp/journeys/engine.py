"""Running journeys: profiles enter on live events, walk their steps, and wait on timers.

Two ways in, each one transaction that reads the instances it moves, walks them as far as they go
now (to a timer or the end), then writes their state, the send log and the outbox messages:

- ``process_events``: live events attributed to profiles (the live hook, beside audiences'
  membership) enter journeys, end instances on exit events and release waits;
- ``advance_due``: timers that are due (delays, waits timing out, sends held by quiet hours), as of
  an injectable ``now``; the journey worker of ``cdp serve`` calls it in a loop.

Instances live in the store (``journey_instances``), so a restart loses nothing: a timer that fell
due while the server was down fires at the next round.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, insert, select, update

from cdp.audiences.compile import ConditionSql
from cdp.computed.schemas import value_at
from cdp.destinations.outbox import enqueue
from cdp.journeys.messages import journey_messages
from cdp.journeys.policy import Intent, arbitrate, profile_timezone, quiet_until
from cdp.journeys.schemas import (
    DataSplit,
    Delay,
    JourneyDefinition,
    RandomSplit,
    Send,
    WaitForEvent,
    branches,
)
from cdp.journeys.service import StoredJourney, definition_of, get_policy, list_journeys
from cdp.store.tables import audience_members, audiences, journey_instances, journey_sends, profiles
from cdp.store.types import dumps_json, sqlite_datetime

ACTIVE, COMPLETED, EXITED = "active", "completed", "exited"


@dataclass
class Instance:
    """One profile's way through one journey, as loaded; ``run`` changes it and writes it back."""

    id: int
    journey: StoredJourney
    definition: JourneyDefinition  # of the version it entered on
    version: int
    profile_id: int
    reentry_value: str
    holdout: bool
    step_id: str | None
    due_at: datetime | None
    context: dict[str, Any]
    entered_at: datetime
    status: str = ACTIVE
    exit_reason: str | None = None


@dataclass(frozen=True)
class Plan:
    """A definition's tree as lookups: each step, the step after it, and each branch's first step."""

    steps: dict[str, Any]
    after: dict[str, str | None]
    first: dict[tuple[str, str], str | None]
    start: str

    @classmethod
    def of(cls, definition: JourneyDefinition) -> Plan:
        steps: dict[str, Any] = {}
        after: dict[str, str | None] = {}
        first: dict[tuple[str, str], str | None] = {}

        def add(sequence: tuple[Any, ...]) -> None:
            for position, step in enumerate(sequence):
                steps[step.id] = step
                after[step.id] = sequence[position + 1].id if position + 1 < len(sequence) else None
                for label, inner in branches(step):
                    first[(step.id, label)] = inner[0].id if inner else None
                    add(inner)

        add(definition.steps)
        return cls(steps, after, first, definition.steps[0].id)


@dataclass
class Run:
    """One transaction's worth of journey work at ``now``: instances moved, sends wanted, log lines."""

    conn: Connection
    now: datetime
    policy: Any = None
    moved: dict[int, Instance] = field(default_factory=dict)
    intents: list[Intent] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    _plans: dict[int, Plan] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.policy = get_policy(self.conn)[0]

    def plan(self, definition: JourneyDefinition) -> Plan:
        found = self._plans.get(id(definition))
        if found is None:
            found = self._plans[id(definition)] = Plan.of(definition)
        return found


def on_live_events(conn: Connection, _source_id: int, rows: list[dict[str, Any]]) -> None:
    """The live hook (``cdp.events.ingest.LIVE_HOOKS``): journeys react to the events now."""
    now = datetime.now(UTC)
    adopt_merged(conn, sorted({row["profile_id"] for row in rows if row.get("merged")}), now=now)
    process_events(conn, rows, now=now)


def adopt_merged(conn: Connection, survivors: list[int], *, now: datetime) -> None:
    """Active instances of the profiles merged into ``survivors`` go on as the survivors': their
    waits are released and their sends addressed by the survivor's events and identifiers. One that
    duplicates an instance of the survivor (same journey, same re-entry value) ends instead."""
    if not survivors:
        return
    into = dict(conn.execute(select(profiles.c.id, profiles.c.merged_into)
                             .where(profiles.c.merged_into.in_(survivors))).all())
    if not into:
        return
    query = (select(journey_instances.c.id, journey_instances.c.journey_id, journey_instances.c.profile_id,
                    journey_instances.c.reentry_value)
             .where(journey_instances.c.status == ACTIVE, journey_instances.c.profile_id.in_([*into, *survivors]))
             .order_by(journey_instances.c.id))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    found = conn.execute(query).all()
    held = {(i.journey_id, i.profile_id, i.reentry_value) for i in found if i.profile_id not in into}
    for instance in found:
        if instance.profile_id not in into:
            continue
        survivor = into[instance.profile_id]
        values: dict[str, Any] = {"profile_id": survivor}
        if (instance.journey_id, survivor, instance.reentry_value) in held:
            values = {"status": EXITED, "exit_reason": f"merged into profile {survivor}", "step_id": None,
                      "due_at": None, "ended_at": now}
        held.add((instance.journey_id, survivor, instance.reentry_value))
        conn.execute(update(journey_instances).where(journey_instances.c.id == instance.id).values(**values))


def process_events(conn: Connection, rows: list[dict[str, Any]], *, now: datetime) -> None:
    """Enter, release or end instances on these stored live events (in the order they happened)."""
    tracks = [row for row in rows if row["type"] == "track" and row.get("profile_id") is not None]
    if not tracks:
        return
    live = list_journeys(conn)
    if not live:
        return
    run = Run(conn, now)
    profile_ids = sorted({row["profile_id"] for row in tracks})
    active: dict[int, list[Instance]] = defaultdict(list)
    for instance in _load(conn, live, journey_instances.c.profile_id.in_(profile_ids), lock="wait"):
        active[instance.profile_id].append(instance)
    members = _audience_members(conn, {j.definition.entry.audience for j in live} - {None}, profile_ids)
    for row in sorted(tracks, key=lambda r: r["timestamp"]):
        for instance in active[row["profile_id"]]:
            if instance.status == ACTIVE:
                _on_event(run, instance, row)
        for journey in live:
            entry = journey.definition.entry
            if entry.matches(row) and (entry.audience is None or (entry.audience, row["profile_id"]) in members):
                _enter(run, journey, row, active[row["profile_id"]])
    _flush(run)


def due(now: datetime) -> ColumnElement[bool]:
    """Instances whose timer is due at ``now``."""
    return (journey_instances.c.status == ACTIVE) & (journey_instances.c.due_at <= now)


def advance_due(conn: Connection, *, now: datetime, limit: int = 500) -> int:
    """Fire the timers due at ``now``, oldest first, at most ``limit``; returns how many fired."""
    live = list_journeys(conn)
    due = _load(conn, live, journey_instances.c.due_at <= now, lock="skip", limit=limit)
    if not due:
        return 0
    run = Run(conn, now)
    for instance in due:
        _on_due(run, instance)
    _flush(run)
    return len(due)


# -- moving one instance ----------------------------------------------------------------------


def _enter(run: Run, journey: StoredJourney, row: dict[str, Any], active: list[Instance]) -> None:
    definition = journey.definition
    properties = row["payload"].get("properties")
    value = "" if definition.reentry_key is None else value_at(properties, definition.reentry_key)
    if value is None:  # keyed journeys need the key: an event without it enters no instance
        return
    value = value if isinstance(value, str) else dumps_json(value)  # 7 and "7" are one cart; true is "true"
    if any(i.journey.id == journey.id and i.status == ACTIVE and i.reentry_value == value for i in active):
        return
    holdout = stable_fraction(journey.key, "holdout", row["profile_id"]) < definition.holdout
    context = {"triggering_event": {"event": row["event"], "messageId": row["message_id"],
                                    "timestamp": row["timestamp"].isoformat(), "properties": properties or {}}}
    instance_id = _insert_instance(run.conn, journey, row["profile_id"], value, holdout, context, run.now)
    if instance_id is None:  # another server process entered it first
        return
    instance = Instance(instance_id, journey, definition, journey.version, row["profile_id"], value, holdout, None,
                        None, context, run.now)
    active.append(instance)
    _go(run, instance, run.plan(definition).start)


def _on_event(run: Run, instance: Instance, row: dict[str, Any]) -> None:
    for match in instance.definition.exit_events:
        if match.matches(row):
            _end(run, instance, EXITED, f"exit event {match.event}")
            return
    step = run.plan(instance.definition).steps.get(instance.step_id or "")
    if isinstance(step, WaitForEvent) and step.awaited.matches(row):
        instance.context[f"{step.event} - arrived"] = {
            "event": row["event"], "messageId": row["message_id"], "timestamp": row["timestamp"].isoformat(),
            "properties": row["payload"].get("properties") or {}}
        _go(run, instance, run.plan(instance.definition).first[(step.id, "arrived")])


def _on_due(run: Run, instance: Instance) -> None:
    plan = run.plan(instance.definition)
    step = plan.steps.get(instance.step_id or "")
    if isinstance(step, Delay):
        _go(run, instance, plan.after[step.id])
    elif isinstance(step, WaitForEvent):
        instance.context[f"{step.event} - timed out"] = {"timeout_at": run.now.isoformat()}
        _go(run, instance, plan.first[(step.id, "timed out")])
    elif isinstance(step, Send):  # held by quiet hours
        if _send(run, instance, step):
            _go(run, instance, plan.after[step.id])
    else:  # the step is gone (cannot happen while versions are kept); end rather than loop
        _end(run, instance, EXITED, f"no step {instance.step_id!r}")


def _go(run: Run, instance: Instance, step_id: str | None) -> None:
    """Walk from ``step_id`` until a step waits or the branch ends."""
    plan = run.plan(instance.definition)
    while step_id is not None:
        step = plan.steps[step_id]
        instance.step_id, instance.due_at = step_id, None
        run.moved[instance.id] = instance
        if isinstance(step, Delay):
            instance.due_at = run.now + step.duration.delta
            return
        if isinstance(step, WaitForEvent):
            instance.due_at = run.now + step.timeout.delta
            return
        if isinstance(step, DataSplit | RandomSplit):
            label = _choose(run, instance, step)
            instance.context[f"{step.id} - {label}"] = {"branch": label}
            step_id = plan.first[(step.id, label)]
            continue
        if isinstance(step, Send) and not _send(run, instance, step):
            return
        step_id = plan.after[step_id]
    _end(run, instance, COMPLETED, None)


def _end(run: Run, instance: Instance, status: str, reason: str | None) -> None:
    instance.status, instance.exit_reason, instance.step_id, instance.due_at = status, reason, None, None
    run.moved[instance.id] = instance


def _choose(run: Run, instance: Instance, step: DataSplit | RandomSplit) -> str:
    if isinstance(step, RandomSplit):
        point = stable_fraction(instance.journey.key, step.id, instance.profile_id) * 100
        for branch in step.branches:
            if point < branch.percent:
                return branch.name
            point -= branch.percent
        return step.branches[-1].name
    trigger = instance.context["triggering_event"]["properties"]
    for branch in step.branches:
        if all(f.matches(trigger) for f in branch.event_filters) and (
                branch.condition is None or _holds(run.conn, branch.condition, instance.profile_id, run.now)):
            return branch.name
    return "otherwise"


def _send(run: Run, instance: Instance, step: Send) -> bool:
    """Log or queue a send; False when quiet hours hold it (the instance waits for their end)."""
    base = {"journey_id": instance.journey.id, "instance_id": instance.id, "profile_id": instance.profile_id,
            "step_id": step.id, "destination_id": step.destination, "at": run.now}
    if instance.holdout:
        run.log.append({**base, "status": "holdout", "reason": "holdout: never sent"})
        return True
    quiet = run.policy.quiet_hours
    if quiet is not None:
        until = quiet_until(quiet, timezone=profile_timezone(run.conn, quiet, instance.profile_id), now=run.now)
        if until is not None:
            instance.due_at = until
            run.log.append({**base, "status": "deferred", "reason": f"quiet_hours: until {until.isoformat()}"})
            return False
    run.intents.append(Intent(instance.journey.key, instance.profile_id, step.destination, (instance, step)))
    return True


def _holds(conn: Connection, condition: Any, profile_id: int, now: datetime) -> bool:
    ids = dict(conn.execute(select(audiences.c.key, audiences.c.id)).all())
    compile_ = ConditionSql(conn.dialect.name, as_of=now, audience_ids=ids)
    return conn.execute(select(profiles.c.id).where(profiles.c.id == profile_id,
                                                    compile_(condition, profiles.c.id))).first() is not None


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``: sticky holdouts and random splits."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# -- reading and writing ------------------------------------------------------------------------


def _load(conn: Connection, live: list[StoredJourney], where: Any, *, lock: str, limit: int | None = None
          ) -> list[Instance]:
    """Active instances matching ``where``, locked on PostgreSQL (``skip``: those another worker holds)."""
    by_id = {journey.id: journey for journey in live}
    query = (select(journey_instances).where(journey_instances.c.status == ACTIVE, where)
             .order_by(journey_instances.c.due_at, journey_instances.c.id))
    if limit is not None:
        query = query.limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=lock == "skip")
    found = []
    for row in conn.execute(query):
        journey = by_id.get(row.journey_id)
        if journey is not None:
            found.append(Instance(row.id, journey, definition_of(conn, journey=journey, version=row.version),
                                  row.version, row.profile_id, row.reentry_value, row.holdout, row.step_id,
                                  row.due_at, row.context, row.entered_at))
    return found


# At the driver level: SQLAlchemy compiles an ON CONFLICT statement anew on every call (it has no
# cache key), which cost more than the insert. Another server process may have entered the same
# profile and value meanwhile (PostgreSQL): the partial unique index makes that insert do nothing.
_INSERT_INSTANCE = (
    "INSERT INTO journey_instances (journey_id, version, profile_id, reentry_value, holdout, status, context, "
    "entered_at) VALUES ({values}) ON CONFLICT (journey_id, profile_id, reentry_value) WHERE status = 'active' "
    "DO NOTHING RETURNING id"
)
_SQLITE_INSERT_INSTANCE = _INSERT_INSTANCE.format(values="?, ?, ?, ?, ?, 'active', ?, ?")
_PG_INSERT_INSTANCE = _INSERT_INSTANCE.format(values="%s, %s, %s, %s, %s, 'active', %s::jsonb, %s")


def _insert_instance(conn: Connection, journey: StoredJourney, profile_id: int, value: str, holdout: bool,
                     context: dict[str, Any], now: datetime) -> int | None:
    """The new instance's id, or None when an active one with this value exists already."""
    if conn.dialect.name == "postgresql":
        params: tuple[Any, ...] = (journey.id, journey.version, profile_id, value, holdout, dumps_json(context), now)
        return conn.exec_driver_sql(_PG_INSERT_INSTANCE, params).scalar()
    params = (journey.id, journey.version, profile_id, value, holdout, dumps_json(context), sqlite_datetime(now))
    return conn.exec_driver_sql(_SQLITE_INSERT_INSTANCE, params).scalar()


def _audience_members(conn: Connection, keys: set[str], profile_ids: list[int]) -> set[tuple[str, int]]:
    if not keys:
        return set()
    query = (select(audiences.c.key, audience_members.c.profile_id)
             .join(audience_members, audience_members.c.audience_id == audiences.c.id)
             .where(audiences.c.key.in_(sorted(keys)), audience_members.c.profile_id.in_(profile_ids)))
    return {(key, profile_id) for key, profile_id in conn.execute(query)}


def _flush(run: Run) -> None:
    """Decide the sends under the contact policy, then write the log, the outbox and the instances."""
    by_destination: dict[int, list[tuple[Instance, Send, str]]] = defaultdict(list)
    for intent, reason in arbitrate(run.conn, run.policy, run.intents, now=run.now):
        instance, step = intent.payload
        run.log.append({"journey_id": instance.journey.id, "instance_id": instance.id,
                        "profile_id": instance.profile_id, "step_id": step.id, "destination_id": step.destination,
                        "at": run.now, "status": "sent" if reason is None else "suppressed", "reason": reason})
        if reason is None:
            # Random, not derived from the instance id: ids of deleted journeys' instances come back on SQLite.
            key = f"jrn-{instance.id}-{step.id}-{uuid.uuid4().hex[:12]}"
            by_destination[step.destination].append((instance, step, key))
    for destination_id, sends in by_destination.items():
        enqueue(run.conn, destination_ids=[destination_id], messages=journey_messages(run.conn, sends, at=run.now),
                now=run.now)
    if run.log:
        run.conn.execute(insert(journey_sends), run.log)
    _write(run.conn, run.moved.values(), run.now)


def _write(conn: Connection, moved: Iterable[Instance], now: datetime) -> None:
    rows = [{"b_id": i.id, "b_status": i.status, "b_step_id": i.step_id, "b_due_at": i.due_at, "b_context": i.context,
             "b_ended_at": None if i.status == ACTIVE else now, "b_exit_reason": i.exit_reason} for i in moved]
    if rows:
        conn.execute(update(journey_instances).where(journey_instances.c.id == bindparam("b_id")).values(
            status=bindparam("b_status"), step_id=bindparam("b_step_id"), due_at=bindparam("b_due_at"),
            context=bindparam("b_context"), ended_at=bindparam("b_ended_at"),
            exit_reason=bindparam("b_exit_reason")), rows)
