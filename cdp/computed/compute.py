"""Computing traits from events: one SQL aggregation per definition in batch, a fold of new events on ingestion.

Both read the same definition. The batch counts an event at ``as_of`` when its event time is in
``(as_of - window, as_of]`` and it was received by ``as_of``; ingestion keeps the unwindowed user
traits (``ComputedTrait.incremental``) equal to a batch over every event stored. A value is
written (trait log, then current traits) only where it changed; a profile left with no qualifying
event gets the empty value (0, [] or null) instead of keeping a stale one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Select, and_, func, literal, select

from cdp.computed.json_read import JsonRead
from cdp.computed.schemas import EMPTY, NUMERIC_KINDS, UNIQUE_LIST_LIMIT, ComputedTrait, is_number, number
from cdp.computed.service import lock_computations, mark_computed
from cdp.identity.schemas import USERS
from cdp.profiles.traits import record_trait_changes
from cdp.store.tables import events, profile_links, profile_traits, profiles

WRITE_CHUNK = 5000
READ_CHUNK = 1000

Stamp = Callable[[Any], tuple[datetime, datetime]]  # current row (or None) -> (event_time, received_at)


@dataclass(frozen=True)
class ComputeResult:
    name: str
    as_of: datetime
    profiles: int  # profiles holding a non-empty value
    changed: int  # values written


def compute_traits(
    conn: Connection, *, definitions: Sequence[ComputedTrait], as_of: datetime,
    profile_ids: Collection[int] | None = None,
) -> list[ComputeResult]:
    """Recompute ``definitions`` as of ``as_of`` in SQL and write the values that changed (all profiles by default).

    On PostgreSQL ingestion goes on during the aggregation and waits only while the changes are written.
    """
    results = []
    for definition in definitions:
        before = _current_values(conn, definition.name, profile_ids)
        values = query_values(conn, definition, as_of=as_of, profile_ids=profile_ids)
        current = before
        if lock_computations(conn, exclusive=True):
            # Ingestion folded events into these values meanwhile, maybe events the aggregation did not
            # see: aggregate those profiles again, now that no ingestion runs.
            current = _current_values(conn, definition.name, profile_ids)
            moved = {pid for pid in before.keys() | current.keys()
                     if _canonical(_value(before.get(pid))) != _canonical(_value(current.get(pid)))}
            if moved:
                values = {pid: value for pid, value in values.items() if pid not in moved}
                values.update(query_values(conn, definition, as_of=as_of, profile_ids=moved))
        changes = _changes(definition, values, current, values.keys() | current.keys(), lambda _row: (as_of, as_of))
        for start in range(0, len(changes), WRITE_CHUNK):
            record_trait_changes(conn, changes[start : start + WRITE_CHUNK])
        results.append(ComputeResult(definition.name, as_of, len(values), len(changes)))
    if profile_ids is None:
        mark_computed(conn, names=[d.name for d in definitions], as_of=as_of)
    return results


def apply_incremental(
    conn: Connection, rows: Sequence[dict[str, Any]], definitions: Sequence[ComputedTrait], *,
    merged: Collection[int] = (), now: datetime,
) -> None:
    """Bring traits up to date with event ``rows`` just stored (attributed to ``profile_id``).

    Counts, sums, minima, maxima and unique lists fold the new events into the current value (one
    read, one write); first / last re-read the touched profiles' events in SQL, as do all traits of
    profiles ``merged`` in this batch, whose two histories the trait log cannot add up.
    """
    if not definitions or not rows:
        return
    merged = set(merged)
    found: dict[str, dict[int, list[Any]]] = {}
    for definition in (d for d in definitions if d.incremental):
        per_profile: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            if row["profile_id"] is None or row["profile_id"] in merged:
                continue
            value = definition.contribution(row["type"], row["event"], row["payload"])
            if value is not None:
                per_profile[row["profile_id"]].append(value)
        found[definition.name] = per_profile
    touched = set().union(*(per_profile.keys() for per_profile in found.values())) | merged
    if not touched:
        return
    current = _current(conn, [d.name for d in definitions if d.incremental or merged], touched)
    stamp = _ingestion_stamp(now)
    changes = []
    for definition in (d for d in definitions if d.name in found):
        per_profile = found[definition.name]
        mine = {pid: row for (name, pid), row in current.items() if name == definition.name}
        if definition.kind in ("first", "last"):
            values = query_values(conn, definition, as_of=None, profile_ids=per_profile.keys()) if per_profile else {}
        else:
            values = {pid: _fold(definition.kind, mine[pid].value if pid in mine else None, new)
                      for pid, new in per_profile.items()}
        changes += _changes(definition, values, mine, per_profile.keys(), stamp)
    if merged:
        changes += _refreshed(conn, definitions, merged, current, now)
    record_trait_changes(conn, changes)


def refresh_profiles(
    conn: Connection, *, definitions: Sequence[ComputedTrait], profile_ids: Collection[int], now: datetime
) -> None:
    """Recompute the user traits of profiles whose events moved (a merge or a split) from those events."""
    if definitions and profile_ids:
        current = _current(conn, [d.name for d in definitions], profile_ids)
        record_trait_changes(conn, _refreshed(conn, definitions, profile_ids, current, now))


def _refreshed(
    conn: Connection, definitions: Sequence[ComputedTrait], profile_ids: Collection[int],
    current: dict[tuple[str, int], Any], now: datetime,
) -> list[dict[str, Any]]:
    changes = []
    for definition in (d for d in definitions if d.entity == USERS):
        # Unwindowed traits count every stored event, as the fold does; windowed ones are as of now.
        as_of = None if definition.window_days is None else now
        values = query_values(conn, definition, as_of=as_of, profile_ids=profile_ids)
        mine = {pid: row for (name, pid), row in current.items() if name == definition.name}
        changes += _changes(definition, values, mine, profile_ids, _ingestion_stamp(now))
    return changes


def _ingestion_stamp(now: datetime) -> Stamp:
    # Never older than the value it replaces: a batch computed as of a later time than this
    # request's arrival must not hide the events folded in now (current traits keep the newest).
    def stamp(row: Any) -> tuple[datetime, datetime]:
        return (now, now) if row is None else (max(now, row.event_time), max(now, row.received_at))

    return stamp


def _fold(kind: str, current: Any, new: list[Any]) -> Any:
    if kind == "count":
        return (current or 0) + len(new)
    if kind == "sum":
        return number((current if is_number(current) else 0) + sum(new))
    if kind in ("min", "max"):
        pool = [*new, current] if is_number(current) else new
        return number(min(pool) if kind == "min" else max(pool))
    if kind == "unique_list":
        return _unique_list([*(current if isinstance(current, list) else []), *new])
    raise AssertionError(f"{kind} is not folded")


def _unique_list(values: Iterable[Any]) -> list[Any]:
    """Distinct JSON values sorted by their JSON text, at most ``UNIQUE_LIST_LIMIT``."""
    distinct = {_canonical(value): value for value in values}
    return [distinct[key] for key in sorted(distinct)[:UNIQUE_LIST_LIMIT]]


def _canonical(value: Any) -> bytes:
    return orjson.dumps(number(value) if is_number(value) else value, option=orjson.OPT_SORT_KEYS)


def _changes(
    definition: ComputedTrait, values: dict[int, Any], current: dict[int, Any], candidates: Iterable[int], stamp: Stamp
) -> list[dict[str, Any]]:
    """Trait changes for the candidates whose value differs from the current one (absent = empty)."""
    empty = EMPTY.get(definition.kind)
    changes = []
    for profile_id in candidates:
        value = values.get(profile_id, empty)
        row = current.get(profile_id)
        if _canonical(value) == _canonical(empty if row is None else row.value):
            continue
        event_time, received_at = stamp(row)
        changes.append({"profile_id": profile_id, "name": definition.name, "value": value, "class": "computed",
                        "source_id": None, "message_id": None, "event_time": event_time, "received_at": received_at})
    return changes


def _current_values(conn: Connection, name: str, profile_ids: Collection[int] | None) -> dict[int, Any]:
    return {pid: row for (_, pid), row in _current(conn, [name], profile_ids, times=False).items()}


def _value(row: Any) -> Any:
    return None if row is None else row.value


def _current(
    conn: Connection, names: Sequence[str], profile_ids: Collection[int] | None, *, times: bool = True
) -> dict[tuple[str, int], Any]:
    """Current computed values, by (name, profile); of every profile when ``profile_ids`` is None.

    ``times`` adds their event and arrival times (parsing them is most of the cost of a large read).
    """
    columns = [profile_traits.c.name, profile_traits.c.profile_id, profile_traits.c.value]
    if times:
        columns += [profile_traits.c.event_time, profile_traits.c.received_at]
    query = select(*columns).where(profile_traits.c.name.in_(list(names)), profile_traits.c["class"] == "computed")
    rows = []
    for chunk in id_chunks(profile_ids):
        rows += conn.execute(query if chunk is None else query.where(profile_traits.c.profile_id.in_(chunk))).all()
    return {(row.name, row.profile_id): row for row in rows}


def id_chunks(ids: Collection[int] | None) -> list[list[int] | None]:
    """Sorted ids in chunks small enough for an IN list; ``[None]`` (no restriction) for every profile."""
    if ids is None:
        return [None]
    ordered = sorted(ids)
    return [ordered[start : start + READ_CHUNK] for start in range(0, len(ordered), READ_CHUNK)]


# -- SQL -----------------------------------------------------------------------------------------


def query_values(
    conn: Connection, definition: ComputedTrait, *, as_of: datetime | None, profile_ids: Collection[int] | None
) -> dict[int, Any]:
    """The non-empty value of every profile that has qualifying events; ``as_of`` None reads every stored event."""
    values: dict[int, Any] = {}
    for chunk in id_chunks(profile_ids):
        query = _aggregate(conn.dialect.name, definition, as_of, chunk)
        if definition.kind == "unique_list":
            grouped: dict[int, list[Any]] = defaultdict(list)
            for profile_id, text in conn.execute(query):
                grouped[profile_id].append(orjson.loads(text))
            values.update((pid, _unique_list(found)) for pid, found in grouped.items())
        else:
            values.update((pid, _python(definition.kind, value)) for pid, value in conn.execute(query))
    return values


def _python(kind: str, value: Any) -> Any:
    if kind in NUMERIC_KINDS:
        return number(value)
    if kind in ("most_frequent", "first", "last"):
        return orjson.loads(value)  # JSON text: keeps strings, numbers, booleans and objects apart
    return value


def _aggregate(
    dialect: str, definition: ComputedTrait, as_of: datetime | None, profile_ids: list[int] | None
) -> Select:
    """One query: (profile id, value) for every profile with qualifying events."""
    read = JsonRead(dialect, events.c.payload, (definition.root,))
    if definition.kind == "count":
        value: ColumnElement[Any] = literal(1)
    elif definition.kind in NUMERIC_KINDS:
        value = read.number(definition.property)  # type: ignore[arg-type]
    else:
        value = read.json_text(definition.property)  # type: ignore[arg-type]
    matching = _matching(read, definition, value, as_of, profile_ids).subquery()
    pid, v = matching.c.profile_id, matching.c.v
    kind = definition.kind
    if kind == "count":
        return select(pid, func.count()).group_by(pid)
    if kind in NUMERIC_KINDS:
        return select(pid, getattr(func, kind)(v)).group_by(pid)
    if kind == "unique_count":
        return select(pid, func.count(v.distinct())).group_by(pid)
    if kind == "unique_list":
        return select(pid, v).distinct()
    if kind == "most_frequent":
        counted = select(pid, v, func.count().label("n")).group_by(pid, v).subquery()
        order = (counted.c.n.desc(), read.ordered(counted.c.v))
        ranked = select(counted.c.profile_id, counted.c.v, _rank(counted.c.profile_id, order)).subquery()
    else:
        columns = (matching.c.timestamp, matching.c.received_at, matching.c.source_id, matching.c.message_id)
        order = tuple(c.desc() for c in columns) if kind == "last" else columns
        ranked = select(pid, v, _rank(pid, order)).subquery()
    return select(ranked.c.profile_id, ranked.c.v).where(ranked.c.rank == 1)


def _rank(partition: ColumnElement[Any], order: Sequence[Any]) -> ColumnElement[int]:
    return func.row_number().over(partition_by=partition, order_by=order).label("rank")


def _matching(
    read: JsonRead, definition: ComputedTrait, value: ColumnElement[Any], as_of: datetime | None,
    profile_ids: list[int] | None,
) -> Select:
    """The qualifying events: profile, value (never null), and their order in time."""
    if definition.entity == USERS:
        profile, source = events.c.profile_id, events
    else:
        # An account's trait aggregates the events of the users linked to it now.
        profile = profile_links.c.linked_id
        source = events.join(profile_links, profile_links.c.profile_id == events.c.profile_id).join(
            profiles, and_(profiles.c.id == profile_links.c.linked_id, profiles.c.entity == definition.entity))
    conditions = [events.c.profile_id.is_not(None), events.c.type == definition.type]
    if definition.property is not None:
        present = read.is_number if definition.kind in NUMERIC_KINDS else read.present
        conditions.append(present(definition.property))
    if definition.event is not None:
        conditions.append(events.c.event == definition.event)
    if as_of is not None:
        conditions += [events.c.timestamp <= as_of, events.c.received_at <= as_of]
        if definition.window_days is not None:
            conditions.append(events.c.timestamp > as_of - timedelta(days=definition.window_days))
    conditions += [read.matches(f.property, f.op, f.value) for f in definition.filters]
    if profile_ids is not None:
        conditions.append(profile.in_(profile_ids))
    return select(profile.label("profile_id"), value.label("v"), events.c.timestamp, events.c.received_at,
                  events.c.source_id, events.c.message_id).select_from(source).where(*conditions)
