"""Journey sends as Segment Spec track calls, shaped as Segment Journeys V2 sends them:
``properties.journey_context`` holds the triggering event and each branch taken on the way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from cdp.audiences.sync import profile_identifiers
from cdp.store.tables import profile_traits


def journey_messages(conn: Connection, sends: Sequence[tuple[Any, Any, str]], *, at: datetime
                     ) -> list[tuple[str, dict[str, Any]]]:
    """(idempotency key, message) for each (instance, send step, key); the key is also the messageId."""
    profile_ids = sorted({instance.profile_id for instance, _, _ in sends})
    people = profile_identifiers(conn, profile_ids)
    wanted = sorted({name for _, step, _ in sends for name in step.traits})
    traits: dict[int, dict[str, Any]] = {}
    if wanted:
        query = select(profile_traits.c.profile_id, profile_traits.c.name, profile_traits.c.value).where(
            profile_traits.c.profile_id.in_(profile_ids), profile_traits.c.name.in_(wanted))
        for profile_id, name, value in conn.execute(query):
            traits.setdefault(profile_id, {})[name] = value
    messages = []
    for instance, step, key in sends:
        journey, ids = instance.journey, people.get(instance.profile_id, {})
        own = traits.get(instance.profile_id, {})
        messages.append((key, {
            "type": "track", "messageId": key, "timestamp": at.isoformat(), "event": step.event or journey.definition.title,
            "userId": ids.get("user_id"), "anonymousId": ids.get("anonymous_id") or f"profile:{instance.profile_id}",
            "properties": {
                **{name: own.get(name) for name in step.traits},
                "journey_context": instance.context,
                "journey_metadata": {"journey_id": str(journey.id), "journey_key": journey.key,
                                     "journey_version": instance.version, "epoch_id": str(instance.id),
                                     "step_id": step.id},
            },
            "context": {"personas": {"computation_class": "journey_step",
                                     "computation_id": f"{journey.key}__{step.id}", "computation_key": journey.key,
                                     "profile_id": instance.profile_id},
                        "traits": {"email": ids["email"]} if "email" in ids else {}},
        }))
    return messages
