"""Whether a profile has interacted since a model was trained: the question serving asks first.

A profile the model knows was served its list of best unseen items, computed at training; only
interactions since then can change it (they count as seen). Most requests come from profiles
with none, and for them this one index-only lookup replaces reading and parsing their latest
events (:func:`features.interactions.recent_items`), most of the request's cost.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sqlalchemy import Connection, and_, bindparam, exists, literal, or_, select

from cdp.store.driver import DriverStatement
from cdp.store.tables import events
from cdp.store.types import UTCDateTime
from features.interactions import InteractionSpec


def interacted_since(conn: Connection, *, profile_id: int, since: datetime,
                     spec: InteractionSpec = InteractionSpec()) -> bool:
    """Whether the profile has an interaction event that a model trained as of ``since`` did not
    read: one that happened or was received after it."""
    row = _since(tuple(e.name for e in spec.events)).first(conn, {"profile_id": profile_id, "since": since})
    return bool(row and row[0])


@lru_cache(maxsize=16)
def _since(names: tuple[str, ...]) -> DriverStatement:
    """Built once, run on the driver: a request only binds its values."""
    since = bindparam("since", type_=UTCDateTime)
    later = or_(events.c.timestamp > since, events.c.received_at > since)
    # The names as plain parameters: an expanding IN is rebuilt on every execution.
    track = and_(events.c.type == "track", events.c.event.in_([literal(name) for name in names]))
    return DriverStatement(select(exists().where(events.c.profile_id == bindparam("profile_id"), later, track)))
