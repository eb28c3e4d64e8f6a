"""Destinations: register (the URL checked against SSRF), list, read, delete."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from cdp.destinations.addresses import Allowlist, check_url
from cdp.destinations.schemas import DestinationIn
from cdp.errors import Conflict, NotFound
from cdp.store.tables import destinations


@dataclass(frozen=True)
class Destination:
    id: int
    type: str
    name: str
    url: str
    secret: str
    write_key: str | None
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        """Without the secret and write key: they are shown once, when created."""
        return {"id": self.id, "type": self.type, "name": self.name, "url": self.url, "created_at": self.created_at}


def create_destination(conn: Connection, *, spec: DestinationIn, allowlist: Allowlist, now: datetime) -> Destination:
    """Register a destination whose URL passes the address check; its secret is generated when not given."""
    check_url(spec.url, allowlist)
    if conn.execute(select(destinations.c.id).where(destinations.c.name == spec.name)).first():
        raise Conflict(f"a destination named {spec.name!r} exists already")
    destination_id = conn.execute(insert(destinations).values(
        type=spec.type, name=spec.name, url=spec.url, secret=spec.secret or secrets.token_urlsafe(32),
        write_key=spec.write_key, created_at=now,
    ).returning(destinations.c.id)).scalar_one()
    return get_destination(conn, destination_id=destination_id)


def list_destinations(conn: Connection) -> list[Destination]:
    return [Destination(**row._mapping) for row in conn.execute(select(destinations).order_by(destinations.c.id))]


def get_destination(conn: Connection, *, destination_id: int) -> Destination:
    row = conn.execute(select(destinations).where(destinations.c.id == destination_id)).first()
    if row is None:
        raise NotFound(f"no destination with id {destination_id}")
    return Destination(**row._mapping)


def delete_destination(conn: Connection, *, destination_id: int) -> None:
    """Remove a destination with its outbox and delivery log; audiences naming it just stop sending there."""
    get_destination(conn, destination_id=destination_id)
    conn.execute(delete(destinations).where(destinations.c.id == destination_id))
