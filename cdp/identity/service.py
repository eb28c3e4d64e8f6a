"""Reading the identity graph, explaining it, and undoing a bad merge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, or_, select, tuple_, update

from cdp.computed.compute import refresh_profiles
from cdp.computed.service import definitions_for_ingest
from cdp.errors import Conflict, NotFound
from cdp.identity.extract import identifiers_of
from cdp.identity.schemas import USERS, IdentityRules
from cdp.profiles.traits import rebuild_current_traits
from cdp.store.driver import DriverStatement
from cdp.store.tables import events, identities, merges, profile_links, profiles, trait_changes


@dataclass(frozen=True)
class MergeRecord:
    id: int
    outcome: str
    winner_id: int
    loser_id: int
    rule: str
    identifier_type: str
    identifier_value: str
    message_id: str | None
    source_id: int | None
    created_at: datetime
    split_at: datetime | None


def find_profile(conn: Connection, *, type: str, value: str, entity: str = USERS) -> int | None:
    """The live profile an identifier belongs to (``profile_id`` names a profile directly)."""
    if type == "profile_id":
        if not value.isdigit():
            return None
        return live_profile(conn, int(value))
    # One query for the usual case, an identifier of a profile that was never merged away.
    row = _PROFILE_OF.first(conn, {"entity": entity, "type": type, "value": value})
    if row is None:
        return None
    profile_id, merged_into = row
    return profile_id if merged_into is None else live_profile(conn, merged_into)


# On the driver: every API read resolves an identifier, and SQLAlchemy's execution of the statement
# costs several times what running it does.
_PROFILE_OF = DriverStatement(
    select(profiles.c.id, profiles.c.merged_into)
    .join(identities, identities.c.profile_id == profiles.c.id)
    .where(identities.c.entity == bindparam("entity"), identities.c.type == bindparam("type"),
           identities.c.value == bindparam("value"))
)
_MERGED_INTO = select(profiles.c.merged_into).where(profiles.c.id == bindparam("profile_id"))


def live_profile(conn: Connection, profile_id: int) -> int | None:
    """Follow merge tombstones to the profile that holds the data now."""
    for _ in range(64):
        row = conn.execute(_MERGED_INTO, {"profile_id": profile_id}).first()
        if row is None:
            return None
        if row.merged_into is None:
            return profile_id
        profile_id = row.merged_into
    raise Conflict(f"profile {profile_id}: merge chain too long")


def merge_log(conn: Connection, *, profile_id: int) -> list[MergeRecord]:
    """Every merge and refused merge that involved the profile, oldest first."""
    rows = conn.execute(
        select(merges).where(or_(merges.c.winner_id == profile_id, merges.c.loser_id == profile_id))
        .order_by(merges.c.id)
    ).all()
    return [_record(row) for row in rows]


def _record(row: Any) -> MergeRecord:
    return MergeRecord(row.id, row.outcome, row.winner_id, row.loser_id, row.rule, row.identifier_type,
                       row.identifier_value, row.message_id, row.source_id, row.created_at, row.split_at)


def split(conn: Connection, *, merge_id: int, rules: IdentityRules, now: datetime) -> MergeRecord:
    """Undo a merge: revive the merged profile with its identifiers, events and traits.

    Each event of the surviving profile goes back to the revived one when its highest-priority
    identifier is one of the revived profile's; the message that caused the merge stays with the
    survivor when its own higher-priority id (e.g. user_id) is the survivor's.
    """
    row = conn.execute(select(merges).where(merges.c.id == merge_id)).first()
    if row is None or row.outcome != "merged":
        raise NotFound(f"no merge {merge_id} (refused merges have nothing to undo)")
    if row.split_at is not None:
        raise Conflict(f"merge {merge_id} was already split at {row.split_at.isoformat()}")
    computed = definitions_for_ingest(conn)  # first: it may wait for a batch compute, before any row lock
    survivor = live_profile(conn, row.winner_id)
    revived = row.loser_id
    assert survivor is not None
    moved_ids = list(row.identity_ids or [])
    for start in range(0, len(moved_ids), 500):
        conn.execute(update(identities).where(
            identities.c.id.in_(moved_ids[start : start + 500]), identities.c.profile_id == survivor
        ).values(profile_id=revived))
    conn.execute(update(profiles).where(profiles.c.id == revived).values(merged_into=None, updated_at=now))
    conn.execute(update(profiles).where(profiles.c.id == survivor).values(updated_at=now))

    owner = _owners(conn, [survivor, revived])
    back: list[tuple[int, int, str, dict[str, Any]]] = []
    for event in conn.execute(
        select(events.c.id, events.c.source_id, events.c.message_id, events.c.payload).where(events.c.profile_id == survivor)
    ):
        found = identifiers_of(event.payload, rules)
        first_known = next((owner[(i.type, i.value)] for i in found.person if (i.type, i.value) in owner), survivor)
        if first_known == revived:
            back.append((event.id, event.source_id, event.message_id, event.payload))
    for start in range(0, len(back), 500):
        chunk = back[start : start + 500]
        conn.execute(update(events).where(events.c.id.in_([b[0] for b in chunk])).values(profile_id=revived))
        conn.execute(update(trait_changes).where(
            trait_changes.c.profile_id == survivor,
            tuple_(trait_changes.c.source_id, trait_changes.c.message_id).in_([(b[1], b[2]) for b in chunk]),
        ).values(profile_id=revived))
    _relink_groups(conn, revived, [b[3] for b in back if b[3].get("type") == "group"], rules, now)
    rebuild_current_traits(conn, profile_ids=[survivor, revived])
    refresh_profiles(conn, definitions=computed, profile_ids=[survivor, revived], now=now)
    conn.execute(update(merges).where(merges.c.id == merge_id).values(split_at=now))
    return _record(conn.execute(select(merges).where(merges.c.id == merge_id)).one())


def _owners(conn: Connection, profile_ids: list[int]) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        select(identities.c.type, identities.c.value, identities.c.profile_id)
        .where(identities.c.entity == USERS, identities.c.profile_id.in_(profile_ids))
    )
    return {(r.type, r.value): r.profile_id for r in rows}


def _relink_groups(conn: Connection, profile_id: int, payloads: list[dict[str, Any]], rules: IdentityRules,
                   now: datetime) -> None:
    """The revived profile is again a member of the accounts its own group calls named."""
    for payload in payloads:
        for entity, identifier in identifiers_of(payload, rules).links:
            account = find_profile(conn, type=identifier.type, value=identifier.value, entity=entity)
            linked = account is not None and conn.execute(select(profile_links.c.profile_id).where(
                profile_links.c.profile_id == profile_id, profile_links.c.linked_id == account)).first()
            if account is not None and not linked:
                conn.execute(insert(profile_links).values(profile_id=profile_id, linked_id=account, created_at=now))

