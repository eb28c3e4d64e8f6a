"""Durable bulk ingestion: validate, resolve identity, record traits, insert; one transaction per call."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from cdp.audiences.membership import on_live_events
from cdp.computed.compute import apply_incremental
from cdp.computed.schemas import ComputedTrait
from cdp.computed.service import definitions_for_ingest
from cdp.config import Settings
from cdp.events.schemas import Envelope, IngestResult, Rejection
from cdp.events.bulk import insert_event_rows
from cdp.events.validate import prepare_message
from cdp.governance.enforce import enforce, record_violations
from cdp.governance.service import active_plan
from cdp.identity.extract import MessageIdentifiers, identifiers_of
from cdp.identity.resolve import IdentityBatch, Profile, message_context, returning_owners
from cdp.identity.schemas import ACCOUNTS, IdentityRules
from cdp.journeys.engine import on_live_events as journeys_on_live_events
from cdp.privacy.regulations import suppressed_among
from cdp.profiles.traits import append_trait_changes, fold_into_current, identify_traits
from cdp.store.tables import events, quarantine

log = logging.getLogger(__name__)

# Real-time side effects of live traffic (event-triggered audiences, journeys). Imports run with
# ``live=False`` so that replaying last year's history does not fire this morning's campaigns.
LiveHook = Callable[[Connection, int, list[dict[str, Any]]], None]
LIVE_HOOKS: list[LiveHook] = [on_live_events, journeys_on_live_events]  # audiences first: entries read them
# Calls that record nothing about the person beyond the event itself (no traits, links or aliases).
_NOTHING_TO_RECORD = frozenset({"track", "page", "screen"})


@dataclass(frozen=True)
class IngestConfig:
    max_message_bytes: int
    identity: IdentityRules
    attribute_at_ingest: bool = False  # see store_pending

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestConfig:
        at_ingest = settings.attribution_at_ingest
        if at_ingest is None:
            at_ingest = settings.resolved_database_url.startswith("postgresql")
        return cls(max_message_bytes=settings.max_message_bytes, identity=IdentityRules.from_settings(settings),
                   attribute_at_ingest=at_ingest)


def ingest(
    conn: Connection,
    *,
    source_id: int,
    messages: Iterable[Any],
    envelope: Envelope,
    config: IngestConfig,
    implied_type: str | None = None,
    live: bool = True,
    defer_attribution: bool = False,
) -> IngestResult:
    """Validate ``messages``; store valid ones (idempotent on messageId), quarantine the rest.

    Runs inside the caller's transaction: when it commits, every accepted message is durable.
    With ``defer_attribution`` (the Tracking API), valid messages are inserted marked pending
    (but see :func:`store_pending`): identity resolution, traits and live hooks follow in bulk
    (``cdp.events.attribution``).
    """
    prepared = prepare_batch(messages, envelope, config=config, implied_type=implied_type)
    return store_prepared(conn, source_id=source_id, prepared=prepared, envelope=envelope, config=config, live=live,
                          defer_attribution=defer_attribution)


def prepare_batch(
    messages: Iterable[Any], envelope: Envelope, *, config: IngestConfig, implied_type: str | None = None
) -> list[dict[str, Any] | Rejection]:
    """Each message's ``events`` row, or why the Spec refuses it: no store needed, so the Tracking API
    does it before taking the store's single writer."""
    return [prepare_message(message, envelope, max_bytes=config.max_message_bytes, implied_type=implied_type)
            for message in messages]


def store_prepared(
    conn: Connection,
    *,
    source_id: int,
    prepared: list[dict[str, Any] | Rejection],
    envelope: Envelope,
    config: IngestConfig,
    live: bool = True,
    defer_attribution: bool = False,
) -> IngestResult:
    """The rest of :func:`ingest` for messages :func:`prepare_batch` checked: tracking plan, insert, quarantine.

    With ``defer_attribution``, ``result.deferred`` holds the rows stored pending, for the
    attribution follower (each with its ``id``), and only returning people's may be attributed at
    once (:func:`store_pending`).
    """
    rows: list[dict[str, Any]] = []
    result = IngestResult()
    plan = active_plan(conn, source_id=source_id)  # tracking plan (cdp.governance): flag, block, count
    found: list[dict[str, Any]] = []
    for index, item in enumerate(prepared):
        if plan is not None and not isinstance(item, Rejection):
            item = enforce(plan, item, found)
        if isinstance(item, Rejection):
            result.rejections.append(replace(item, index=index))
        else:
            item["source_id"] = source_id
            rows.append(item)
    if defer_attribution:
        store_pending(conn, rows, config=config, now=envelope.received_at, live=live)
        result.deferred = [row for row in rows if row["pending"]]
    else:
        stored = store_events(conn, rows, config=config, now=envelope.received_at)
        if live:
            fire_live_hooks(conn, stored)
    store_rejections(conn, source_id=source_id, rejections=result.rejections, envelope=envelope)
    record_violations(conn, found)
    result.accepted = len(rows)
    result.quarantined = len(result.rejections)
    return result


def store_pending(conn: Connection, rows: list[dict[str, Any]], *, config: IngestConfig, now: datetime,
                  live: bool = True) -> None:
    """Insert valid rows for the attribution follower, each marked ``pending`` or not.

    With ``config.attribute_at_ingest``, a returning person's track, page and screen calls (most
    of live traffic: every identifier they carry already leads to one profile, and there is nothing
    to link, merge or record) are inserted with their profile, one lookup per request, instead of
    inserted pending and rewritten by the follower, which costs the store as much again; their
    computed traits and live hooks run here. The rest (identify, group and alias calls, new or
    conflicting identifiers, suppressed people) is stored ``pending`` for the follower.
    """
    for row in rows:  # what an earlier attempt of this transaction found is not true any more
        row.pop("profile_id", None)
        row.pop("id", None)
    attributed: list[dict[str, Any]] = []
    computed: list[ComputedTrait] = []
    if config.attribute_at_ingest:
        computed = definitions_for_ingest(conn)  # first: it may wait for a batch compute, before any row lock
        simple = [row for row in rows if row["type"] in _NOTHING_TO_RECORD]
        found = [identifiers_of(row["payload"], config.identity) for row in simple]
        suppressed = suppressed_among(conn, (i for ids in found for i in ids.person))
        for row, ids, profile_id in zip(simple, found, returning_owners(conn, found), strict=True):
            if profile_id is not None and suppressed.isdisjoint(ids.person):
                row["profile_id"] = profile_id
                attributed.append(row)
    for row in rows:
        row["pending"] = row.get("profile_id") is None
    insert_event_rows(conn, rows)
    attributed = [row for row in attributed if "id" in row]  # not an SDK's retry of a stored message
    if attributed:
        _follow_up(conn, attributed, computed, now=now, live=live)


def _follow_up(conn: Connection, rows: list[dict[str, Any]], computed: list[ComputedTrait], *, now: datetime,
               live: bool) -> None:
    """Computed traits and live hooks of rows attributed at ingestion. A failure of ours there (a
    bug on a strange message) must not refuse messages that are stored: the rows are left pending
    instead, to the follower, which narrows a failing batch down to the message and gets past it."""
    try:
        with conn.begin_nested():
            apply_incremental(conn, rows, computed, now=now)
            if live:
                fire_live_hooks(conn, rows)
    except (OperationalError, InterfaceError):  # the store's: retried, or the request fails as the store is down
        raise
    except Exception:
        log.exception("the follow-up of events attributed at ingestion failed; the follower takes them")
        conn.execute(update(events).where(events.c.id.in_([row["id"] for row in rows]))
                     .values(profile_id=None, pending=True))
        for row in rows:
            row["profile_id"], row["pending"] = None, True


def store_events(conn: Connection, rows: list[dict[str, Any]], *, config: IngestConfig, now: datetime) -> list[dict[str, Any]]:
    """Attribute valid rows to profiles and insert them; returns those that were new to the store.

    A repeated messageId (an SDK retry) is skipped before identity resolution, so a retry never
    records its traits twice.
    """
    computed = definitions_for_ingest(conn)  # first: it may wait for a batch compute, before any row lock
    fresh, merged = attribute(conn, _not_yet_stored(conn, rows), rules=config.identity, now=now)
    insert_event_rows(conn, fresh)
    apply_incremental(conn, fresh, computed, merged=merged, now=now)
    return fresh


def fire_live_hooks(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Run the real-time side effects of newly stored live events, per source."""
    by_source: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_source[row["source_id"]].append(row)
    for source_id, stored in by_source.items():
        for hook in LIVE_HOOKS:
            hook(conn, source_id, stored)


@dataclass(frozen=True)
class Identified:
    """Rows in event-time order with the identifiers each carries: what identity resolution needs
    before it reads the store, so that it can be done before taking the store's writer."""

    rows: list[dict[str, Any]]
    found: list[MessageIdentifiers]

    @classmethod
    def of(cls, rows: list[dict[str, Any]], rules: IdentityRules) -> Identified:
        # In event-time order, so limits over a window and merges read like what happened.
        ordered = sorted(rows, key=lambda row: row["timestamp"])
        return cls(ordered, [identifiers_of(row["payload"], rules) for row in ordered])

    def only(self, ids: Collection[int]) -> Identified:
        """The rows whose ``id`` is among ``ids``."""
        kept = [(row, found) for row, found in zip(self.rows, self.found, strict=True) if row["id"] in ids]
        return Identified([row for row, _ in kept], [found for _, found in kept])


def attribute(
    conn: Connection, rows: list[dict[str, Any]], *, rules: IdentityRules, now: datetime
) -> tuple[list[dict[str, Any]], set[int]]:
    """Resolve each row's profile (``row["profile_id"]``, ``row["merged"]`` when it absorbed another
    one in this batch) and record identify / group traits.

    Returns the rows to store (those of suppressed people, under a regulation, are accepted but
    not kept) and the profiles that absorbed another one (their traits were rebuilt from the log).
    """
    return attribute_identified(conn, Identified.of(rows, rules), rules=rules, now=now)


def attribute_identified(
    conn: Connection, batch: Identified, *, rules: IdentityRules, now: datetime
) -> tuple[list[dict[str, Any]], set[int]]:
    """:func:`attribute` for rows whose identifiers were found already."""
    if not batch.rows:
        return [], set()
    ordered, found = batch.rows, batch.found
    suppressed = suppressed_among(conn, (i for ids in found for i in ids.person))
    if suppressed:
        kept = [(row, ids) for row, ids in zip(ordered, found, strict=True) if suppressed.isdisjoint(ids.person)]
        ordered, found = [row for row, _ in kept], [ids for _, ids in kept]
    graph = IdentityBatch(conn, rules)
    graph.load(found)
    people: list[Profile | None] = []
    trait_owners: list[tuple[Profile, dict[str, Any]]] = []
    for row, ids in zip(ordered, found, strict=True):
        context = message_context(row)
        person = graph.resolve_person(ids, context)
        linked = graph.resolve_links(person, ids, context)
        people.append(person)
        owner = linked.get(ACCOUNTS) if row["type"] == "group" else person if row["type"] == "identify" else None
        if owner is not None:
            trait_owners.append((owner, row))
    graph.flush(now)
    # Logged under the profile each message reached, so that a later split can hand them back.
    append_trait_changes(conn, _trait_changes(trait_owners, lambda owner: owner.key))
    rebuilt = graph.apply_merges(now)
    current = _trait_changes(trait_owners, lambda owner: owner.root().key)
    fold_into_current(conn, [change for change in current if change["profile_id"] not in rebuilt])
    for row, person in zip(ordered, people, strict=True):
        row["profile_id"] = person.root().key if person is not None else None
        row["merged"] = row["profile_id"] in rebuilt  # live hooks: its events and traits changed wholesale
    return ordered, rebuilt


def _trait_changes(
    owners: list[tuple[Profile, dict[str, Any]]], profile_id: Callable[[Profile], int]
) -> list[dict[str, Any]]:
    return [
        {"profile_id": profile_id(owner), "name": name, "value": value, "class": "identify",
         "source_id": row["source_id"], "message_id": row["message_id"], "event_time": row["timestamp"],
         "received_at": row["received_at"]}
        for owner, row in owners
        for name, value in identify_traits(row["payload"]).items()
    ]


def _not_yet_stored(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_source: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        by_source[row["source_id"]].setdefault(row["message_id"], row)  # first of in-batch repeats
    fresh = []
    for source_id, candidates in by_source.items():
        ids = list(candidates)
        seen: set[str] = set()
        for start in range(0, len(ids), 500):
            seen.update(conn.execute(
                select(events.c.message_id).where(
                    events.c.source_id == source_id, events.c.message_id.in_(ids[start : start + 500]))
            ).scalars())
        fresh.extend(row for message_id, row in candidates.items() if message_id not in seen)
    return fresh


def store_rejections(
    conn: Connection, *, source_id: int, rejections: list[Rejection], envelope: Envelope
) -> None:
    if rejections:
        conn.execute(
            quarantine.insert(),
            [
                {
                    "source_id": source_id,
                    "message_id": r.message_id,
                    "code": r.code,
                    "reason": r.reason,
                    "received_at": envelope.received_at,
                    "sent_at": envelope.sent_at,
                    "payload": r.message,
                }
                for r in rejections
            ],
        )
