"""The durable outbox: messages written with the change that caused them, claimed, retried, dead-lettered, replayed.

Delivery is at least once: a message is claimed by pushing its ``next_attempt_at`` past a lease,
sent outside any transaction, then marked. A worker killed between the send and the mark leaves it
claimed until the lease ends, and it is sent again with the same ``Idempotency-Key``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, insert, select, update

from cdp.errors import InvalidInput
from cdp.store.db import after_commit
from cdp.store.tables import delivery_attempts, destinations, outbox

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
# Set when this process's enqueueing transaction commits, so that its delivery worker looks at once
# instead of at its next poll (and not before the commit, when it would find nothing and sleep).
enqueued = threading.Event()


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_s: float
    backoff_max_s: float

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failure: exponential, capped."""
        return timedelta(seconds=min(self.backoff_s * 2 ** (attempts - 1), self.backoff_max_s))


@dataclass(frozen=True)
class Claimed:
    id: int
    destination_id: int
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int  # before this one


def enqueue(
    conn: Connection, *, destination_ids: Sequence[int], messages: Sequence[tuple[str, dict[str, Any]]], now: datetime
) -> int:
    """Queue each (idempotency key, message) for each destination still registered; returns how many rows."""
    if not messages or not destination_ids:
        return 0
    live = list(conn.execute(select(destinations.c.id).where(destinations.c.id.in_(list(destination_ids)))).scalars())
    rows = [{"destination_id": destination_id, "idempotency_key": key, "payload": payload, "status": PENDING,
             "attempts": 0, "next_attempt_at": now, "created_at": now}
            for destination_id in live for key, payload in messages]
    if rows:
        conn.execute(insert(outbox), rows)
        after_commit(conn, enqueued.set)
    return len(rows)


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(outbox.c.status == PENDING, outbox.c.next_attempt_at <= now)


def any_due(conn: Connection, *, now: datetime) -> bool:
    """Whether a message is due: a read, so that an idle worker never takes the store's writer."""
    return conn.execute(select(outbox.c.id).where(_due(now)).limit(1)).first() is not None


def claim_due(conn: Connection, *, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Take up to ``limit`` due messages, oldest first, for ``lease``; concurrent workers skip each other's."""
    query = (select(outbox.c.id, outbox.c.destination_id, outbox.c.idempotency_key, outbox.c.payload, outbox.c.attempts)
             .where(_due(now)).order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = [Claimed(**row._mapping) for row in conn.execute(query)]
    if claimed:
        conn.execute(update(outbox).where(outbox.c.id.in_([c.id for c in claimed])).values(next_attempt_at=now + lease))
    return claimed


def record_attempt(
    conn: Connection, *, message: Claimed, status_code: int | None, error: str | None, duration_ms: int,
    now: datetime, policy: RetryPolicy,
) -> str:
    """Log an attempt and move the message on: delivered, due again after the backoff, or dead. Returns its status."""
    attempt = message.attempts + 1
    conn.execute(insert(delivery_attempts).values(
        outbox_id=message.id, destination_id=message.destination_id, attempt=attempt, status_code=status_code,
        error=error, duration_ms=duration_ms, at=now))
    if error is None:
        values: dict[str, Any] = {"status": DELIVERED, "delivered_at": now, "last_error": None}
    elif attempt >= policy.max_attempts:
        values = {"status": DEAD, "last_error": error}
    else:
        values = {"next_attempt_at": now + policy.delay(attempt), "last_error": error}
    # Only while still ours: a replay meanwhile has reset it, and wins.
    conn.execute(update(outbox).where(outbox.c.id == message.id, outbox.c.attempts == message.attempts,
                                      outbox.c.status == PENDING).values(attempts=attempt, **values))
    return values.get("status", PENDING)


def replay(conn: Connection, *, destination_id: int, now: datetime, ids: Sequence[int] = (), status: str = DEAD) -> int:
    """Send messages again from their first attempt: the dead ones by default, or ``delivered`` ones, or these ids."""
    if status not in (DEAD, DELIVERED):
        raise InvalidInput("replay takes dead or delivered messages")
    query = update(outbox).where(outbox.c.destination_id == destination_id, outbox.c.status == status)
    if ids:
        query = query.where(outbox.c.id.in_(list(ids)))
    count = conn.execute(query.values(status=PENDING, attempts=0, next_attempt_at=now, last_error=None,
                                      delivered_at=None)).rowcount
    if count:
        after_commit(conn, enqueued.set)
    return count


def messages_page(conn: Connection, *, destination_id: int, limit: int, before: int | None = None,
                  status: str | None = None) -> list[Any]:
    """The destination's messages, newest first, with their status and last error."""
    query = (select(outbox.c.id, outbox.c.idempotency_key, outbox.c.status, outbox.c.attempts, outbox.c.next_attempt_at,
                    outbox.c.last_error, outbox.c.created_at, outbox.c.delivered_at, outbox.c.payload)
             .where(outbox.c.destination_id == destination_id).order_by(outbox.c.id.desc()).limit(limit))
    if before is not None:
        query = query.where(outbox.c.id < before)
    if status is not None:
        query = query.where(outbox.c.status == status)
    return conn.execute(query).all()


def attempts_of(conn: Connection, *, outbox_ids: Sequence[int]) -> dict[int, list[Any]]:
    """Every attempt of these messages, oldest first."""
    found: dict[int, list[Any]] = {}
    query = (select(delivery_attempts).where(delivery_attempts.c.outbox_id.in_(list(outbox_ids)))
             .order_by(delivery_attempts.c.id))
    for row in conn.execute(query):
        found.setdefault(row.outbox_id, []).append(row)
    return found


def failing(conn: Connection) -> list[Any]:
    """Per destination: dead messages, and pending ones that failed at least once (retrying)."""
    query = (select(destinations.c.id, destinations.c.name, outbox.c.status, func.count().label("n"))
             .join(destinations, destinations.c.id == outbox.c.destination_id)
             .where((outbox.c.status == DEAD) | ((outbox.c.status == PENDING) & (outbox.c.attempts > 0)))
             .group_by(destinations.c.id, destinations.c.name, outbox.c.status).order_by(destinations.c.name))
    return conn.execute(query).all()

