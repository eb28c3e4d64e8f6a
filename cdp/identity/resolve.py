"""Real-time deterministic identity resolution, one batch of messages at a time.

The graph's part that a batch touches is loaded up front (a few queries), changed in memory message
by message, and written back in bulk. Per message, Segment Unify's "priority trust" rule: take the
message's identifiers, highest priority first; if linking them all (and merging the profiles they
belong to) would break a limit (user_id: 1 ever; anonymous_id: 5 per week ...), drop the
lowest-priority identifier and try again. The message joins the profile its remaining identifiers
point to; a refused link is logged, like every merge, with the rule, identifier and message.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, insert, select, text, update

from cdp.identity.extract import MessageIdentifiers
from cdp.identity.schemas import USERS, Identifier, IdentityRules
from cdp.profiles.traits import rebuild_current_traits
from cdp.store.rows import insert_rows
from cdp.store.types import dumps_json, id_list
from cdp.store.tables import events, identities, merges, profile_links, profiles, trait_changes


_PROFILE_COLUMNS = ("id", "entity", "created_at", "updated_at", "first_message_id", "first_source_id")
_IDENTITY_COLUMNS = ("entity", "type", "value", "profile_id", "source_id", "first_message_id", "seen_at", "created_at")


# The batch's identifiers travel as one JSON array of [entity, type, value] (cheaper to send than
# column arrays, which psycopg dumps element by element), each looked up through the unique index.
# Only their owners: a profile's other identities are read when a limit or a merge needs them
# (IdentityBatch.complete), which most messages, a returning person's, never do.
_SQLITE_OWNERS = """
    SELECT o.entity, o.type, o.value, o.profile_id FROM json_each(?) AS k JOIN identities AS o
    ON o.value = json_extract(k.value, '$[2]') AND o.type = json_extract(k.value, '$[1]')
    AND o.entity = json_extract(k.value, '$[0]')"""
# One probe of the unique index per identifier (LIMIT 1 keeps the planner from turning the lateral
# lookup into a join): as a plain join, a small or freshly grown table got a hash join that read
# every identity for each batch.
_PG_OWNERS = """SELECT o.entity, o.type, o.value, o.profile_id FROM json_array_elements(%s::json) AS k
    CROSS JOIN LATERAL (SELECT entity, type, value, profile_id FROM identities
    WHERE value = k->>2 AND type = k->>1 AND entity = k->>0 LIMIT 1) AS o"""
# seen_at as naive UTC on PostgreSQL: psycopg builds time zone aware datetimes several times slower.
_IDENTITIES_OF = {
    "sqlite": "SELECT profile_id, type, value, seen_at FROM identities WHERE profile_id IN (SELECT value FROM json_each(?))",
    # A join on the unnested ids, as _PG_LOCK_PROFILES below explains.
    "postgresql": "SELECT i.profile_id, i.type, i.value, i.seen_at AT TIME ZONE 'UTC' FROM unnest(%b::bigint[]) AS k(id) "
                  "JOIN identities AS i ON i.profile_id = k.id",
}
# Shared locks in id order, as a merge takes its exclusive ones. A join on the unnested ids, not
# ``id = ANY(array)``: once psycopg prepares the statement, PostgreSQL may settle on a generic plan
# that filters a scan of every profile against the whole array, row by row (a batch's 400 ids took
# 50 ms on 9,000 profiles, growing with both); the join probes the primary key once per id.
_PG_LOCK_PROFILES = """
    SELECT p.id FROM unnest(%b::bigint[]) AS k(id) JOIN profiles AS p ON p.id = k.id ORDER BY p.id FOR SHARE OF p"""
# Advisory locks on identifiers, in one sorted order so that two workers cannot deadlock on them.
_PG_LOCK_IDENTIFIERS = """
    SELECT pg_advisory_xact_lock(h) FROM (
        SELECT DISTINCT hashtextextended(concat_ws(chr(31), k->>0, k->>1, k->>2), 0) AS h
        FROM json_array_elements(%s::json) AS k ORDER BY 1) AS s"""


@dataclass(eq=False)
class Profile:
    """A profile as this batch sees it; ``id`` is None until a new one is written."""

    entity: str
    id: int | None = None
    # -> first seen (event time). All of them once ``complete``; until then only those this batch added.
    identities: dict[Identifier, datetime] = field(default_factory=dict)
    complete: bool = True  # False for a stored profile until IdentityBatch.complete reads its identities
    merged_into: Profile | None = None
    created_at: datetime | None = None
    first_message_id: str | None = None
    first_source_id: int | None = None

    def root(self) -> Profile:
        profile = self
        while profile.merged_into is not None:
            profile = profile.merged_into
        return profile

    @property
    def key(self) -> int:
        assert self.id is not None, "profile not written yet"
        return self.id


@dataclass(frozen=True)
class _NewIdentity:
    entity: str
    identifier: Identifier
    owner: Profile
    seen_at: datetime
    message_id: str | None
    source_id: int


@dataclass(frozen=True)
class _Merge:
    outcome: str  # merged | refused
    winner: Profile
    loser: Profile
    rule: str
    identifier: Identifier
    message_id: str | None
    source_id: int


class Context(NamedTuple):
    """Where the message that caused a change came from (a named tuple: one per message, built in C)."""

    at: datetime  # event time
    received_at: datetime
    message_id: str | None
    source_id: int
    call: str


class IdentityBatch:
    """The identity graph's state for one batch: load, resolve messages, then ``flush``."""

    def __init__(self, conn: Connection, rules: IdentityRules) -> None:
        self.conn = conn
        self.rules = rules
        self.owners: dict[tuple[str, Identifier], Profile] = {}
        self.by_id: dict[int, Profile] = {}
        self.new_profiles: list[Profile] = []
        self.new_identities: list[_NewIdentity] = []
        self.merges: list[_Merge] = []
        self.links: set[tuple[Profile, Profile]] = set()

    # -- loading -----------------------------------------------------------------------------

    def load(self, wanted: Collection[MessageIdentifiers]) -> None:
        """Read which profile owns each identifier of the batch."""
        keys: set[tuple[str, str, str]] = set()  # (entity, type, value)
        for found in wanted:
            keys.update((USERS, *identifier) for identifier in found.person)
            keys.update((entity, *identifier) for entity, identifier in found.links)
            if found.previous_id is not None:
                keys.update((USERS, type_, found.previous_id) for type_ in ("user_id", "anonymous_id"))
        if not keys:
            return
        for entity, type_, value, profile_id in _stored_owners(self.conn, keys, hold_new=True):
            profile = self.by_id.get(profile_id)
            if profile is None:
                profile = self.by_id[profile_id] = Profile(entity=entity, id=profile_id, complete=False)
            self.owners[(entity, Identifier(type_, value))] = profile
        # A message whose identifiers are not all one stored profile's links or merges them, under
        # limits: read those profiles' identities now, in one query, not one per message.
        linking = set()
        for found in wanted:
            owners = {self.owners.get((USERS, identifier)) for identifier in found.person}
            if found.previous_id is not None:  # as resolve_person types it
                owners.add(self.owners.get((USERS, Identifier("user_id", found.previous_id)))
                           or self.owners.get((USERS, Identifier("anonymous_id", found.previous_id))))
            if len(owners) > 1:
                linking.update(owners)
        linking.discard(None)
        self.complete(linking)

    def complete(self, profiles: Iterable[Profile]) -> None:
        """Read all the stored identities of these profiles, for a limit to count or a merge to move."""
        wanted = {profile.key: profile for profile in profiles if not profile.complete}
        if not wanted:
            return
        dialect = self.conn.dialect.name
        rows = self.conn.exec_driver_sql(_IDENTITIES_OF[dialect], (id_list(dialect, sorted(wanted)),)).all()
        for profile_id, type_, value, seen_at in rows:
            # What the batch added to the profile is newer than anything stored, and never stored yet.
            wanted[profile_id].identities.setdefault(Identifier(type_, value), _utc(seen_at))
        for profile in wanted.values():
            profile.complete = True

    # -- resolving ---------------------------------------------------------------------------

    def resolve_person(self, found: MessageIdentifiers, context: Context) -> Profile | None:
        """The (root) user profile ``found`` belongs to, after linking and merging what the rules allow."""
        chosen = list(found.person)
        if found.previous_id is not None:
            previous = Identifier("user_id", found.previous_id)
            if (USERS, previous) not in self.owners:
                previous = Identifier("anonymous_id", found.previous_id)
            chosen = sorted(dict.fromkeys([*chosen, previous]), key=self.rules.rank)
        if not chosen:
            return None
        if (returning := self._sole_owner(chosen)) is not None:
            return returning
        refused: list[tuple[Identifier, str]] = []
        while self._sole_owner(chosen) is None:
            violation = self._violation(chosen, context.at)
            if violation is None or len(chosen) == 1:
                break
            refused.append((chosen.pop(), violation))
        profile = self._join(USERS, chosen, context)
        for identifier, reason in refused:
            other = self.owners.get((USERS, identifier))
            if other is not None and other.root() is not profile:
                self.merges.append(_Merge("refused", profile, other.root(), f"{context.call}: {reason}", identifier,
                                          context.message_id, context.source_id))
        return profile

    def resolve_links(self, person: Profile | None, found: MessageIdentifiers, context: Context) -> dict[str, Profile]:
        """The account / custom entity profiles the message names, linked to ``person``."""
        linked = {}
        for entity, identifier in found.links:
            target = self._join(entity, [identifier], context)
            linked[entity] = target
            if person is not None:
                self.links.add((person, target))
        return linked

    def _sole_owner(self, chosen: list[Identifier]) -> Profile | None:
        """The usual case, a returning person whose identifiers all lead to one profile: nothing to
        link, so no limit can break. None otherwise."""
        sole = None
        for identifier in chosen:
            owner = self.owners.get((USERS, identifier))
            if owner is None:
                return None
            owner = owner.root()
            if sole is not None and owner is not sole:
                return None
            sole = owner
        return sole

    def _violation(self, chosen: list[Identifier], at: datetime) -> str | None:
        owners = [self.owners[(USERS, i)].root() for i in chosen if (USERS, i) in self.owners]
        self.complete(owners)
        combined: dict[Identifier, datetime] = {}
        for owner in owners:
            combined.update(owner.identities)
        for identifier in chosen:
            combined.setdefault(identifier, at)
        for kind, limit in self.rules.limits.items():
            values = {
                i.value for i, seen in combined.items()
                if i.type == kind and (limit.window is None or seen >= at - limit.window)
            }
            if len(values) > limit.count:
                return f"{limit.describe(kind)} would be exceeded"
        return None

    def _join(self, entity: str, chosen: list[Identifier], context: Context) -> Profile:
        owned = list(dict.fromkeys(
            self.owners[(entity, i)].root() for i in chosen if (entity, i) in self.owners
        ))
        if not owned:
            profile = Profile(entity=entity, created_at=context.received_at, first_message_id=context.message_id,
                              first_source_id=context.source_id)
            self.new_profiles.append(profile)
        else:
            # The oldest stored profile survives, so ids that apps already hold stay valid.
            profile = min(owned, key=lambda p: (p.id is None, p.id or 0))
            owner_of = {i: self.owners[(entity, i)].root() for i in chosen if (entity, i) in self.owners}
            kept = next(i for i, owner in owner_of.items() if owner is profile)
            for loser in owned:
                if loser is not profile:
                    link = next(i for i, owner in owner_of.items() if owner is loser)
                    self._merge(profile, loser, kept, link, context)
        for identifier in chosen:
            if (entity, identifier) not in self.owners:
                self.owners[(entity, identifier)] = profile
                profile.identities[identifier] = context.at
                self.new_identities.append(
                    _NewIdentity(entity, identifier, profile, context.at, context.message_id, context.source_id)
                )
        return profile

    def _merge(self, winner: Profile, loser: Profile, kept: Identifier, link: Identifier, context: Context) -> None:
        self.complete((winner, loser))
        loser.merged_into = winner
        for identifier, seen in loser.identities.items():
            winner.identities[identifier] = min(seen, winner.identities.get(identifier, seen))
        rule = f"{context.call} call carried {kept.type} {kept.value!r} and {link.type} {link.value!r} of another profile"
        self.merges.append(_Merge("merged", winner, loser, rule, link, context.message_id, context.source_id))

    # -- writing -----------------------------------------------------------------------------

    def flush(self, now: datetime) -> None:
        """Write new profiles and identities, then apply the merges in order (see module doc)."""
        if self.new_profiles:
            for profile, profile_id in zip(self.new_profiles, self._reserve_profile_ids(), strict=True):
                profile.id = profile_id
            insert_rows(self.conn, profiles, _PROFILE_COLUMNS, [
                (p.id, p.entity, p.created_at, p.created_at, p.first_message_id, p.first_source_id)
                for p in self.new_profiles
            ])
        insert_rows(self.conn, identities, _IDENTITY_COLUMNS, [
            (n.entity, n.identifier.type, n.identifier.value, n.owner.key, n.source_id, n.message_id, n.seen_at, now)
            for n in self.new_identities
        ])

    def _reserve_profile_ids(self) -> list[int]:
        # Ids first, then one bulk insert: SQLAlchemy inserts row by row when it must return ids
        # in order on SQLite. SQLite has one writer at a time (this transaction), so the ids after
        # the largest are free; PostgreSQL hands them out from the sequence.
        count = len(self.new_profiles)
        if self.conn.dialect.name == "postgresql":
            return list(self.conn.execute(
                text("SELECT nextval(pg_get_serial_sequence('profiles', 'id')) FROM generate_series(1, :n)"),
                {"n": count}).scalars())
        start = self.conn.execute(select(func.coalesce(func.max(profiles.c.id), 0))).scalar_one() + 1
        return list(range(start, start + count))

    def apply_merges(self, now: datetime) -> set[int]:
        """Re-attribute what the merged profiles owned; returns the survivors whose traits changed."""
        survivors: set[int] = set()
        for merge in self.merges:
            identity_ids = None
            if merge.outcome == "merged":
                identity_ids = _apply_merge(self.conn, winner=merge.winner.key, loser=merge.loser.key, now=now)
                survivors.add(merge.winner.key)
            self.conn.execute(insert(merges).values(
                entity=merge.winner.entity, outcome=merge.outcome, winner_id=merge.winner.key,
                loser_id=merge.loser.key, rule=merge.rule, identifier_type=merge.identifier.type,
                identifier_value=merge.identifier.value, message_id=merge.message_id, source_id=merge.source_id,
                identity_ids=identity_ids, created_at=now,
            ))
        if self.links:
            rows = {(person.root().key, target.root().key) for person, target in self.links}
            # By the primary key's leading column: a row-value IN makes SQLite scan the whole table.
            existing = set(self.conn.execute(
                select(profile_links.c.profile_id, profile_links.c.linked_id).where(
                    profile_links.c.profile_id.in_(sorted({person for person, _ in rows})))
            ).tuples())
            fresh = sorted(rows - existing)
            if fresh:
                self.conn.execute(insert(profile_links), [
                    {"profile_id": p, "linked_id": t, "created_at": now} for p, t in fresh])
        return survivors


def returning_owners(conn: Connection, found: Sequence[MessageIdentifiers]) -> list[int | None]:
    """For each message, the stored profile that owns every identifier it carries, when that is all
    there is to resolve: a returning person, nothing to link, merge or count against a limit. None
    for a message that needs the whole resolution (:class:`IdentityBatch`): new identifiers, two
    owners, links to an account, an alias, or no identifier at all.

    Owners are held as :meth:`IdentityBatch.load` holds them (:func:`_stored_owners`): a merge
    that would move them away waits until what was attributed to them is committed.
    """
    simple = [bool(ids.person) and not ids.links and ids.previous_id is None for ids in found]
    keys = {(USERS, *identifier) for ids, plain in zip(found, simple, strict=True) if plain for identifier in ids.person}
    owner = {Identifier(type_, value): profile_id
             for _, type_, value, profile_id in (_stored_owners(conn, keys, hold_new=False) if keys else ())}
    returning: list[int | None] = []
    for ids, plain in zip(found, simple, strict=True):
        owners = {owner.get(identifier) for identifier in ids.person} if plain else {None}
        returning.append(owners.pop() if len(owners) == 1 else None)
    return returning


def _stored_owners(conn: Connection, keys: set[tuple[str, str, str]], *, hold_new: bool) -> list[Any]:
    """``(entity, type, value, profile_id)`` of the ``keys`` a profile owns.

    On PostgreSQL (SQLite has one writer at a time) what was read stays true until commit.
    Profiles that own identifiers get a shared row lock: ordinary traffic never waits on it, but a
    merge, which locks both profiles for update first, waits until their readers commit. With
    ``hold_new``, identifiers nobody has yet get an advisory lock, so two workers racing on the
    same new person wait for each other instead of both creating it. Read after the locks, and
    again until every owner read was locked before: a merge may have moved identifiers meanwhile.
    """
    wanted = dumps_json(list(keys))
    if conn.dialect.name != "postgresql":
        return conn.exec_driver_sql(_SQLITE_OWNERS, (wanted,)).all()
    owned = conn.exec_driver_sql(_PG_OWNERS, (wanted,)).all()
    if hold_new and (missing := keys - {(entity, type_, value) for entity, type_, value, _ in owned}):
        conn.exec_driver_sql(_PG_LOCK_IDENTIFIERS, (dumps_json(list(missing)),)).all()
    # Read again at least once: a worker this one waited for on an identifier may have stored it.
    locked: set[int] = set()
    while True:
        if unlocked := sorted({profile_id for *_, profile_id in owned} - locked):
            locked.update(conn.exec_driver_sql(_PG_LOCK_PROFILES, (unlocked,)).scalars())
        owned = conn.exec_driver_sql(_PG_OWNERS, (wanted,)).all()
        if {profile_id for *_, profile_id in owned} <= locked:
            return owned


def _apply_merge(conn: Connection, *, winner: int, loser: int, now: datetime) -> list[int]:
    """Move the loser's identities, events, trait history and links to the winner; keep a tombstone."""
    # First lock both for update (PostgreSQL): a concurrent request that read the loser holds it
    # shared until it commits, so nothing it adds to the loser can land after the move below.
    conn.execute(select(profiles.c.id).where(profiles.c.id.in_(sorted((winner, loser))))
                 .order_by(profiles.c.id).with_for_update()).all()
    moved = conn.execute(select(identities.c.id).where(identities.c.profile_id == loser)).scalars().all()
    conn.execute(update(identities).where(identities.c.profile_id == loser).values(profile_id=winner))
    conn.execute(update(events).where(events.c.profile_id == loser).values(profile_id=winner))
    conn.execute(update(trait_changes).where(trait_changes.c.profile_id == loser).values(profile_id=winner))
    move_links(conn, source=loser, target=winner, now=now)
    conn.execute(update(profiles).where(profiles.c.id == loser).values(merged_into=winner, updated_at=now))
    conn.execute(update(profiles).where(profiles.c.id == winner).values(updated_at=now))
    rebuild_current_traits(conn, profile_ids=[winner, loser])
    return list(moved)


def move_links(conn: Connection, *, source: int, target: int, now: datetime) -> None:
    """Links of ``source`` (as a user or as an account) now belong to ``target``; no duplicates."""
    for this, other in ((profile_links.c.profile_id, profile_links.c.linked_id),
                        (profile_links.c.linked_id, profile_links.c.profile_id)):
        pairs = conn.execute(select(other).where(this == source)).scalars().all()
        if not pairs:
            continue
        conn.execute(profile_links.delete().where(this == source))
        have = set(conn.execute(select(other).where(this == target, other.in_(pairs))).scalars())
        rows = [{this.name: target, other.name: p, "created_at": now} for p in pairs if p not in have and p != target]
        if rows:
            conn.execute(insert(profile_links), rows)


def message_context(row: dict[str, Any]) -> Context:
    return Context(at=row["timestamp"], received_at=row["received_at"], message_id=row["message_id"],
                   source_id=row["source_id"], call=row["type"])


def _utc(seen_at: str | datetime) -> datetime:
    """An identity's ``seen_at`` as read by the driver: ISO text on SQLite, naive UTC on PostgreSQL."""
    if isinstance(seen_at, str):
        seen_at = datetime.fromisoformat(seen_at)
    return seen_at.replace(tzinfo=UTC)
