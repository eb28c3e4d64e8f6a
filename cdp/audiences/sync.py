"""Audience changes as Segment Spec calls, as Segment Engage syncs them: an identify setting the
audience trait, then a track "Audience Entered" / "Audience Exited"."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from cdp.audiences.service import StoredAudience
from cdp.store.tables import identities

EVENTS = {"entered": "Audience Entered", "exited": "Audience Exited"}


def audience_messages(
    conn: Connection, audience: StoredAudience, changes: Sequence[tuple[int, tuple[int, str]]], *, at: datetime
) -> list[tuple[str, dict[str, Any]]]:
    """(idempotency key, message) pairs for ``changes`` of (history id, (profile id, entered | exited)).

    The key is also the messageId, so a Segment-compatible receiver drops a redelivered call itself.
    """
    people = profile_identifiers(conn, [pid for _, (pid, _) in changes])
    messages = []
    for history_id, (profile_id, change) in changes:
        ids = people.get(profile_id, {})
        who = {"userId": ids.get("user_id"), "anonymousId": ids.get("anonymous_id") or f"profile:{profile_id}"}
        context = {"personas": {"computation_class": "audience", "computation_id": str(audience.id),
                                "computation_key": audience.key, "profile_id": profile_id},
                   "traits": {"email": ids["email"]} if "email" in ids else {}}
        member = change == "entered"
        base = f"aud-{audience.id}-{history_id}"
        messages.append((f"{base}-identify", {
            "type": "identify", "messageId": f"{base}-identify", "timestamp": at.isoformat(), **who,
            "traits": {audience.key: member}, "context": context}))
        messages.append((f"{base}-track", {
            "type": "track", "messageId": f"{base}-track", "timestamp": at.isoformat(), **who,
            "event": EVENTS[change], "properties": {"audience_key": audience.key, "audience_name": audience.definition.title,
                                                    audience.key: member},
            "context": context}))
    return messages


def profile_identifiers(conn: Connection, profile_ids: list[int]) -> dict[int, dict[str, str]]:
    """The first user id, anonymous id and email of each profile."""
    found: dict[int, dict[str, str]] = {}
    query = (select(identities.c.profile_id, identities.c.type, identities.c.value)
             .where(identities.c.profile_id.in_(profile_ids), identities.c.type.in_(("user_id", "anonymous_id", "email")))
             .order_by(identities.c.id))
    for row in conn.execute(query):
        found.setdefault(row.profile_id, {}).setdefault(row.type, row.value)
    return found
