"""The durable outbox: messages written with the change that caused them, claimed, retried, dead-lettered, replayed.

Delivery is at least once: a message is claimed by pushing its ``next_attempt_at`` past a lease,
sent outside any transaction, then marked. A worker killed between the send and the mark leaves it
claimed until the lease ends, and it is sent again with the same ``Idempotency-Key``.

While a delivery worker runs in this process (``handoff``), messages are written claimed for its
lease and handed to it as their transaction commits: a live event's message is sent without a
claim transaction or a poll in between, and a crash before the send still only delays it.
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
from cdp.store.types import dumps_json, loads_json

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


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


class Handoff:
    """This process's delivery worker, as ``enqueue`` sees it: open while the worker runs."""

    def __init__(self) -> None:
        self._lease: timedelta | None = None
        self._held: list[Claimed] = []
        self._lock = threading.Lock()
        # Set when this process commits messages, or replays some, so that its worker looks at once
        # instead of at its next poll (and not before the commit, when it would find nothing and sleep).
        self.wake = threading.Event()

    @property
    def lease(self) -> timedelta | None:
        return self._lease

    def open(self, lease: timedelta) -> None:
        self._lease = lease

    def close(self) -> None:
        """From now on messages are written unclaimed, for any worker; those held stay claimed until
        their lease ends (or the worker sends them on its way out)."""
        self._lease = None

    def put(self, messages: list[Claimed]) -> None:
        with self._lock:
            self._held.extend(messages)
        self.wake.set()

    def take(self) -> list[Claimed]:
        with self._lock:
            taken, self._held = self._held, []
        return taken


handoff = Handoff()


def enqueue(
    conn: Connection, *, destination_ids: Sequence[int], messages: Sequence[tuple[str, dict[str, Any]]], now: datetime
) -> int:
    """Queue each (idempotency key, message) for each destination still registered; returns how many rows."""
    if not messages or not destination_ids:
        return 0
    live = list(conn.execute(select(destinations.c.id).where(destinations.c.id.in_(list(destination_ids)))).scalars())
    lease = handoff.lease
    rows = [{"destination_id": destination_id, "idempotency_key": key, "payload": payload, "status": PENDING,
             "attempts": 0, "next_attempt_at": now if lease is None else now + lease, "created_at": now}
            for destination_id in live for key, payload in messages]
    if not rows:
        return 0
    if lease is None:
        conn.execute(insert(outbox), rows)
        after_commit(conn, handoff.wake.set)
        return len(rows)
    ids = conn.execute(insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True), rows).scalars().all()
    # The payload as a claim would read it back from its JSON column.
    claimed = [Claimed(id, row["destination_id"], row["idempotency_key"], loads_json(dumps_json(row["payload"])), 0)
               for id, row in zip(ids, rows, strict=True)]
    after_commit(conn, lambda: handoff.put(claimed))
    return len(rows)


def due(now: datetime) -> ColumnElement[bool]:
    """Messages waiting for an attempt at ``now``."""
    return and_(outbox.c.status == PENDING, outbox.c.next_attempt_at <= now)


def claim_due(conn: Connection, *, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Take up to ``limit`` due messages, oldest first, for ``lease``; concurrent workers skip each other's."""
    query = (select(outbox.c.id, outbox.c.destination_id, outbox.c.idempotency_key, outbox.c.payload, outbox.c.attempts)
             .where(due(now)).order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit))
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
        after_commit(conn, handoff.wake.set)
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

