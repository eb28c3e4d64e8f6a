"""Tracking plans: versions, assignment to sources, the plan a source enforces, violation counts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, case, delete, func, insert, select, update

from cdp.errors import Conflict, InvalidInput, NotFound
from cdp.governance.check import compile_rules
from cdp.governance.schemas import MODES, WINDOWS, ActivePlan, Mode, SourcePlan, TrackingPlan, ViolationCount
from cdp.store.cache import StoreCache
from cdp.store.tables import source_plans, sources, tracking_plan_versions, tracking_plans, violations

# Ingestion asks on every request. A change made through this process is seen at once; one made
# by another process (a server worker, the CLI) within this many seconds.
PLAN_CACHE_SECONDS = 5.0
_plans: StoreCache[int, ActivePlan | None] = StoreCache(PLAN_CACHE_SECONDS)


def create_plan(conn: Connection, *, name: str, rules: Mapping[str, Any], now: datetime) -> TrackingPlan:
    """A new plan with ``rules`` as its version 1."""
    name = name.strip()
    if not name:
        raise InvalidInput("a tracking plan needs a non-empty name")
    compile_rules(rules)
    if conn.execute(select(tracking_plans.c.id).where(tracking_plans.c.name == name)).first():
        raise Conflict(f"a tracking plan named {name!r} already exists; add a version to change it")
    plan_id = conn.execute(insert(tracking_plans).values(name=name, created_at=now)).inserted_primary_key[0]
    conn.execute(insert(tracking_plan_versions).values(plan_id=plan_id, version=1, rules=rules, created_at=now))
    return get_plan(conn, name=name)


def add_version(conn: Connection, *, name: str, rules: Mapping[str, Any], now: datetime) -> TrackingPlan:
    """A new version of plan ``name``; the sources on the plan enforce it from now on."""
    compile_rules(rules)
    plan_id = _plan_id(conn, name)
    newest = conn.execute(
        select(func.max(tracking_plan_versions.c.version)).where(tracking_plan_versions.c.plan_id == plan_id)
    ).scalar()
    conn.execute(
        insert(tracking_plan_versions).values(plan_id=plan_id, version=newest + 1, rules=rules, created_at=now)
    )
    _plans.forget()
    return get_plan(conn, name=name)


def get_plan(conn: Connection, *, name: str, version: int | None = None) -> TrackingPlan:
    """Plan ``name`` at ``version`` (default: the newest), with the sources enforcing it."""
    plan_id = _plan_id(conn, name)
    query = select(tracking_plan_versions).where(tracking_plan_versions.c.plan_id == plan_id)
    newest = conn.execute(query.order_by(tracking_plan_versions.c.version.desc()).limit(1)).one()
    row = newest if version is None else conn.execute(query.where(tracking_plan_versions.c.version == version)).first()
    if row is None:
        raise NotFound(f"tracking plan {name!r} has no version {version}; its newest is {newest.version}")
    assigned = conn.execute(
        select(sources.c.name, source_plans.c.mode)
        .join(sources, sources.c.id == source_plans.c.source_id)
        .where(source_plans.c.plan_id == plan_id)
        .order_by(sources.c.name)
    )
    return TrackingPlan(
        id=plan_id,
        name=name,
        version=row.version,
        versions=newest.version,
        rules=row.rules,
        created_at=row.created_at,
        sources=tuple(SourcePlan(source=s.name, plan=name, mode=s.mode) for s in assigned),
    )


def plan_names(conn: Connection) -> list[str]:
    """Every tracking plan's name, alphabetically."""
    return list(conn.execute(select(tracking_plans.c.name).order_by(tracking_plans.c.name)).scalars())


def assign_plan(conn: Connection, *, source: str, plan: str, mode: str, now: datetime) -> SourcePlan:
    """Make ``source`` enforce ``plan`` (its newest version, always) in ``mode``."""
    if mode not in MODES:
        raise InvalidInput(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    source_id, plan_id = source_id_of(conn, source), _plan_id(conn, plan)
    values = {"plan_id": plan_id, "mode": mode, "updated_at": now}
    changed = conn.execute(update(source_plans).where(source_plans.c.source_id == source_id).values(**values))
    if changed.rowcount == 0:
        conn.execute(insert(source_plans).values(source_id=source_id, **values))
    _plans.forget()
    return SourcePlan(source=source, plan=plan, mode=cast(Mode, mode))


def unassign_plan(conn: Connection, *, source: str) -> None:
    """``source`` enforces no plan any more."""
    removed = conn.execute(delete(source_plans).where(source_plans.c.source_id == source_id_of(conn, source)))
    if removed.rowcount == 0:
        raise NotFound(f"source {source!r} has no tracking plan")
    _plans.forget()


def active_plan(conn: Connection, *, source_id: int) -> ActivePlan | None:
    """The plan ``source_id`` enforces, cached for ``PLAN_CACHE_SECONDS`` (the ingestion hot path)."""
    return _plans.get(conn, source_id, lambda: load_active_plan(conn, source_id=source_id))


def load_active_plan(conn: Connection, *, source_id: int) -> ActivePlan | None:
    """The plan ``source_id`` enforces, read now: its newest version and the source's mode."""
    row = conn.execute(
        select(source_plans.c.mode, tracking_plans.c.id, tracking_plans.c.name,
               tracking_plan_versions.c.version, tracking_plan_versions.c.rules)
        .join(tracking_plans, tracking_plans.c.id == source_plans.c.plan_id)
        .join(tracking_plan_versions, tracking_plan_versions.c.plan_id == tracking_plans.c.id)
        .where(source_plans.c.source_id == source_id)
        .order_by(tracking_plan_versions.c.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return ActivePlan(source_id=source_id, plan_id=row.id, name=row.name, version=row.version, mode=row.mode,
                      rules=compile_rules(row.rules))



def count_violations(conn: Connection, *, now: datetime, source: str | None = None) -> list[ViolationCount]:
    """Violations per source, event and kind received in each window of ``WINDOWS`` up to ``now``."""
    starts = [now - span for span in WINDOWS.values()]
    query = (
        select(
            sources.c.name, violations.c.type, violations.c.event, violations.c.kind,
            *(func.sum(case((violations.c.received_at > start, 1), else_=0)) for start in starts),
        )
        .join(sources, sources.c.id == violations.c.source_id)
        .where(violations.c.received_at > min(starts), violations.c.received_at <= now)
        .group_by(sources.c.name, violations.c.type, violations.c.event, violations.c.kind)
        .order_by(func.count().desc(), sources.c.name, violations.c.event, violations.c.kind)
    )
    if source is not None:
        query = query.where(violations.c.source_id == source_id_of(conn, source))
    return [
        ViolationCount(source=name, type=kind_of_call, event=event, kind=kind,
                       counts=dict(zip(WINDOWS, (int(n) for n in counts))))
        for name, kind_of_call, event, kind, *counts in conn.execute(query)
    ]


def source_id_of(conn: Connection, name: str) -> int:
    source_id = conn.execute(select(sources.c.id).where(sources.c.name == name)).scalar()
    if source_id is None:
        raise NotFound(f"no source named {name!r}")
    return source_id


def _plan_id(conn: Connection, name: str) -> int:
    plan_id = conn.execute(select(tracking_plans.c.id).where(tracking_plans.c.name == name)).scalar()
    if plan_id is None:
        raise NotFound(f"no tracking plan named {name!r}")
    return plan_id
