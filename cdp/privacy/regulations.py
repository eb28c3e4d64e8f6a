"""Segment's regulations: DELETE_ONLY, SUPPRESS_WITH_DELETE, SUPPRESS_ONLY and UNSUPPRESS.

A subject (a user id, anonymous id or email) is expanded through the identity graph: every
identifier linked to its profile, every profile merged into it, and their events, traits
(identify, computed, predicted, audience), memberships and merge history are deleted; suppression
covers every linked identifier, so the person can't come back through another device.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, or_, select, update

from cdp.errors import InvalidInput, NotFound
from cdp.identity.schemas import USERS, Identifier
from cdp.identity.service import find_profile
from cdp.store.cache import StoreCache
from cdp.store.db import write_transaction
from cdp.store.tables import (
    EVENT_PENDING,
    audience_history,
    audience_members,
    events,
    identities,
    journey_instances,
    journey_sends,
    merges,
    profile_links,
    profile_traits,
    profiles,
    quarantine,
    regulations,
    suppressions,
    trait_changes,
)

REGULATION_TYPES = ("DELETE_ONLY", "SUPPRESS_WITH_DELETE", "SUPPRESS_ONLY", "UNSUPPRESS")
SUBJECT_TYPES = {"USER_ID": "user_id", "ANONYMOUS_ID": "anonymous_id", "EMAIL": "email"}
MAX_SUBJECTS = 5000
# A regulation left RUNNING this long by a server that died is taken up again.
STALE_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Regulation:
    id: str
    regulation_type: str
    subject_type: str
    subject_ids: list[str]
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    counts: dict[str, int] | None


def create_regulation(
    conn: Connection, *, regulation_type: str, subject_type: str, subject_ids: Sequence[str], now: datetime
) -> str:
    """Record a regulation (status INITIALIZED) after checking it; returns its id."""
    if regulation_type not in REGULATION_TYPES:
        raise InvalidInput(f"regulationType must be one of {', '.join(REGULATION_TYPES)}")
    if subject_type not in SUBJECT_TYPES:
        raise InvalidInput(f"subjectType must be one of {', '.join(SUBJECT_TYPES)}")
    ids = [s.strip() for s in subject_ids if isinstance(s, str) and s.strip()]
    if not ids or len(ids) != len(subject_ids):
        raise InvalidInput("subjectIds must be a non-empty list of non-empty strings")
    if len(ids) > MAX_SUBJECTS:
        raise InvalidInput(f"at most {MAX_SUBJECTS:,} subjectIds per regulation, got {len(ids):,}")
    regulation_id = uuid.uuid4().hex
    conn.execute(insert(regulations).values(
        id=regulation_id, regulation_type=regulation_type, subject_type=subject_type,
        subject_ids=list(dict.fromkeys(ids)), status="INITIALIZED", created_at=now,
    ))
    return regulation_id


def get_regulation(conn: Connection, regulation_id: str) -> Regulation:
    row = conn.execute(select(regulations).where(regulations.c.id == regulation_id)).first()
    if row is None:
        raise NotFound(f"no regulation {regulation_id!r}")
    return Regulation(**row._mapping)


def claim_pending(conn: Connection, *, now: datetime) -> list[str]:
    """Regulations to run: new ones, and RUNNING ones whose server died; marked RUNNING here."""
    stale = now - STALE_AFTER
    ids = conn.execute(select(regulations.c.id).where(or_(
        regulations.c.status == "INITIALIZED",
        (regulations.c.status == "RUNNING") & (regulations.c.started_at < stale),
    )).order_by(regulations.c.created_at)).scalars().all()
    return [regulation_id for regulation_id in ids if claim(conn, regulation_id, now=now, stale=stale)]


def claim(conn: Connection, regulation_id: str, *, now: datetime, stale: datetime | None = None) -> bool:
    """Mark one regulation RUNNING unless another worker already runs it."""
    stale = stale or now - STALE_AFTER
    result = conn.execute(update(regulations).where(
        regulations.c.id == regulation_id,
        or_(regulations.c.status == "INITIALIZED",
            (regulations.c.status == "RUNNING") & (regulations.c.started_at < stale)),
    ).values(status="RUNNING", started_at=now))
    return result.rowcount == 1


def run_pending(engine: Engine) -> None:
    """Run every regulation waiting, or abandoned by a server that died (called at start)."""
    for regulation_id in write_transaction(engine, lambda conn: claim_pending(conn, now=datetime.now(UTC))):
        run_regulation(engine, regulation_id, now=datetime.now(UTC))


def claim_and_run(engine: Engine, regulation_id: str) -> Regulation | None:
    """Run one regulation unless another worker has it; None when it had."""
    now = datetime.now(UTC)
    if not write_transaction(engine, lambda conn: claim(conn, regulation_id, now=now)):
        return None
    return run_regulation(engine, regulation_id, now=now)


def run_regulation(engine: Engine, regulation_id: str, *, now: datetime) -> Regulation:
    """Carry out a claimed regulation in one transaction; FINISHED, or FAILED with the error."""
    try:
        with engine.begin() as conn:
            regulation = get_regulation(conn, regulation_id)
            counts = _carry_out(conn, regulation, now=now)
            conn.execute(update(regulations).where(regulations.c.id == regulation_id).values(
                status="FINISHED", finished_at=now, counts=counts))
    except Exception as error:  # recorded for the API, then re-raised for the logs
        with engine.begin() as conn:
            conn.execute(update(regulations).where(regulations.c.id == regulation_id).values(
                status="FAILED", finished_at=now, error=f"{type(error).__name__}: {error}"))
        raise
    with engine.connect() as conn:
        return get_regulation(conn, regulation_id)


def _carry_out(conn: Connection, regulation: Regulation, *, now: datetime) -> dict[str, int]:
    kind = SUBJECT_TYPES[regulation.subject_type]
    counts = {"subjects": len(regulation.subject_ids)}
    for subject in regulation.subject_ids:
        value = subject.lower() if kind == "email" else subject
        origin = f"{kind}:{value}"
        if regulation.regulation_type == "UNSUPPRESS":
            _add(counts, "unsuppressed", conn.execute(delete(suppressions).where(suppressions.c.origin == origin)).rowcount)
            continue
        graph = _graph_of(conn, Identifier(kind, value))
        if regulation.regulation_type in ("SUPPRESS_ONLY", "SUPPRESS_WITH_DELETE"):
            _add(counts, "suppressed_identifiers", _suppress(conn, graph.identifiers, origin, regulation.id, now))
        if regulation.regulation_type in ("DELETE_ONLY", "SUPPRESS_WITH_DELETE"):
            for key, n in _delete(conn, graph).items():
                _add(counts, key, n)
    return counts


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


@dataclass(frozen=True)
class _Graph:
    profile_ids: list[int]  # the live profile and every profile merged into it
    identifiers: list[Identifier]


def _graph_of(conn: Connection, subject: Identifier) -> _Graph:
    root = find_profile(conn, type=subject.type, value=subject.value)
    ids: list[int] = []
    frontier = [root] if root is not None else []
    while frontier:
        ids += frontier
        frontier = conn.execute(select(profiles.c.id).where(profiles.c.merged_into.in_(frontier))).scalars().all()
    found = {subject}
    if ids:
        found |= {Identifier(r.type, r.value) for r in conn.execute(
            select(identities.c.type, identities.c.value).where(
                identities.c.profile_id.in_(ids), identities.c.entity == USERS))}
    return _Graph(profile_ids=ids, identifiers=sorted(found))


def _suppress(conn: Connection, found: Iterable[Identifier], origin: str, regulation_id: str, now: datetime) -> int:
    fresh = [i for i in found if not conn.execute(select(suppressions.c.id).where(
        suppressions.c.type == i.type, suppressions.c.value == i.value)).first()]
    if fresh:
        _any_suppression.forget()
        conn.execute(insert(suppressions), [
            {"type": i.type, "value": i.value, "origin": origin, "regulation_id": regulation_id, "created_at": now}
            for i in fresh])
    return len(fresh)


def _delete(conn: Connection, graph: _Graph) -> dict[str, int]:
    user_ids = [i.value for i in graph.identifiers if i.type == "user_id"]
    anonymous_ids = [i.value for i in graph.identifiers if i.type == "anonymous_id"]
    # Devices that only still-pending events tie to the subject (an identify not yet attributed):
    # left behind, their events would become an anonymous profile of the person once attributed.
    anonymous_ids += conn.execute(select(events.c.anonymous_id.distinct()).where(
        EVENT_PENDING, events.c.user_id.in_(user_ids), events.c.anonymous_id.is_not(None))).scalars().all()
    ids = graph.profile_ids
    # Events the graph attributes, and those it could not (e.g. stored before an id was linked).
    deleted_events = conn.execute(delete(events).where(or_(
        events.c.profile_id.in_(ids), events.c.user_id.in_(user_ids), events.c.anonymous_id.in_(anonymous_ids),
    ))).rowcount
    quarantined = _delete_quarantined(conn, user_ids, anonymous_ids)
    conn.execute(delete(trait_changes).where(trait_changes.c.profile_id.in_(ids)))
    conn.execute(delete(audience_members).where(audience_members.c.profile_id.in_(ids)))
    conn.execute(delete(audience_history).where(audience_history.c.profile_id.in_(ids)))
    conn.execute(delete(journey_sends).where(journey_sends.c.profile_id.in_(ids)))
    conn.execute(delete(journey_instances).where(journey_instances.c.profile_id.in_(ids)))
    traits = conn.execute(delete(profile_traits).where(profile_traits.c.profile_id.in_(ids))).rowcount
    conn.execute(delete(profile_links).where(or_(profile_links.c.profile_id.in_(ids), profile_links.c.linked_id.in_(ids))))
    conn.execute(delete(merges).where(or_(merges.c.winner_id.in_(ids), merges.c.loser_id.in_(ids))))
    conn.execute(delete(identities).where(identities.c.profile_id.in_(ids)))
    conn.execute(update(profiles).where(profiles.c.id.in_(ids)).values(merged_into=None))
    deleted_profiles = conn.execute(delete(profiles).where(profiles.c.id.in_(ids))).rowcount
    return {"events": deleted_events, "profiles": deleted_profiles, "traits": traits, "quarantined": quarantined}


def _delete_quarantined(conn: Connection, user_ids: list[str], anonymous_ids: list[str]) -> int:
    if not user_ids and not anonymous_ids:
        return 0
    return conn.execute(delete(quarantine).where(or_(
        quarantine.c.payload["userId"].as_string().in_(user_ids),
        quarantine.c.payload["anonymousId"].as_string().in_(anonymous_ids),
    ))).rowcount


# Whether a store has any suppression at all, per process: most stores have none, and the hot
# path then skips the lookup. A new suppression reaches every worker within this many seconds.
SUPPRESSIONS_TTL = 1.0
_any_suppression: StoreCache[str, bool] = StoreCache(SUPPRESSIONS_TTL)


def suppressed_among(conn: Connection, found: Iterable[Identifier]) -> set[Identifier]:
    """Which of ``found`` are suppressed (one indexed query, none while the store has no suppression)."""
    wanted = {i for i in found}
    if not wanted or not _has_suppressions(conn):
        return set()
    rows = conn.execute(select(suppressions.c.type, suppressions.c.value).where(
        suppressions.c.value.in_(sorted({i.value for i in wanted}))))
    return {Identifier(r.type, r.value) for r in rows} & wanted


def _has_suppressions(conn: Connection) -> bool:
    return _any_suppression.get(
        conn, "any", lambda: conn.execute(select(suppressions.c.id).limit(1)).first() is not None)
