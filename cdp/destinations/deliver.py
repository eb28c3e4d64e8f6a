"""Sending outbox messages: one signed POST each, to the address checked just before, no redirects.

``DeliveryWorker`` is the thread ``cdp serve`` runs in every process (as it runs the attribution
follower), writing through the process's group committer; ``deliver_due`` is one round of it, for
the CLI and tests.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from sqlalchemy import Connection, Engine

import cdp
from cdp.config import Settings
from cdp.destinations import outbox
from cdp.destinations.addresses import Allowlist, RefusedAddress, check_url
from cdp.destinations.service import Destination, get_destination
from cdp.destinations.signing import HEADER, sign
from cdp.errors import NotFound
from cdp.store.db import any_row, reader, write_transaction
from cdp.store.group_commit import GroupCommitter, write
from cdp.store.tables import outbox as outbox_table

log = logging.getLogger(__name__)
CLAIM_BATCH = 50
RECORD_EVERY_S = 1.0
ERROR_TEXT = 500  # characters of a failure kept in the log


@dataclass(frozen=True)
class DeliveryConfig:
    allowlist: Allowlist
    policy: outbox.RetryPolicy
    timeout_s: float
    lease: timedelta
    poll_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        return cls(
            allowlist=Allowlist.parse(settings.destinations_allowlist),
            policy=outbox.RetryPolicy(settings.delivery_max_attempts, settings.delivery_backoff_s,
                                      settings.delivery_backoff_max_s),
            timeout_s=settings.delivery_timeout_s,
            # Never shorter than a request may take: a slow success must not be sent twice meanwhile.
            lease=timedelta(seconds=max(settings.delivery_lease_s, 2 * settings.delivery_timeout_s)),
            poll_s=settings.delivery_poll_s,
        )


def send(client: httpx.Client, destination: Destination, message: outbox.Claimed, config: DeliveryConfig) -> int:
    """POST one message; returns the status code, or raises ``httpx.HTTPError`` / ``RefusedAddress``."""
    target = check_url(destination.url, config.allowlist)
    body = orjson.dumps({"batch": [message.payload]} if destination.type == "segment" else message.payload)
    parts = urlsplit(destination.url)
    host = f"[{target.address}]" if ":" in target.address else target.address
    pinned = urlunsplit((parts.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, ""))
    headers = {
        "Content-Type": "application/json",
        "Host": parts.netloc,
        "User-Agent": f"cdp/{cdp.__version__}",
        "Idempotency-Key": message.idempotency_key,
        HEADER: sign(destination.secret, body, int(time.time())),
    }
    auth = (destination.write_key, "") if destination.write_key else None
    # TLS still checks the certificate against the host name, though the connection goes to the address.
    response = client.post(pinned, content=body, headers=headers, auth=auth, timeout=config.timeout_s,
                           extensions={"sni_hostname": target.host} if target.scheme == "https" else {})
    return response.status_code


def deliver_due(engine: Engine, client: httpx.Client, config: DeliveryConfig, *, now: datetime | None = None,
                committer: GroupCommitter | None = None) -> int:
    """Claim the messages due at ``now`` (default: the wall clock) and attempt each once; returns how many.

    Writes go through ``committer`` when given (the server's), else each in its own transaction.
    """
    def clock() -> datetime:
        return now or datetime.now(UTC)

    if not any_row(engine, outbox_table, outbox.due(clock())):
        return 0
    claimed = write(engine, committer, partial(_claim, now=clock(), lease=config.lease))
    return deliver(engine, client, config, claimed, now=now, committer=committer)


def _claim(conn: Connection, *, now: datetime, lease: timedelta) -> list[outbox.Claimed]:
    return outbox.claim_due(conn, now=now, lease=lease, limit=CLAIM_BATCH)


def deliver(engine: Engine, client: httpx.Client, config: DeliveryConfig, claimed: list[outbox.Claimed], *,
            now: datetime | None = None, committer: GroupCommitter | None = None) -> int:
    """Attempt each claimed message once; returns how many.

    Attempts are recorded together, once per ``RECORD_EVERY_S`` of sending: one commit per message
    would make the store's single writer (SQLite) the limit on deliveries per second. Through a
    committer the sending goes on meanwhile, without waiting for the record's commit. A crash
    before the record sends those messages again after their lease: at least once, as always.
    """
    def clock() -> datetime:
        return now or datetime.now(UTC)

    cache: dict[int, Destination | None] = {}
    attempts: list[dict[str, Any]] = []
    unrecorded_since = time.perf_counter()
    for message in claimed:
        if message.destination_id not in cache:
            cache[message.destination_id] = _destination(engine, message.destination_id)
        destination = cache[message.destination_id]
        if destination is None:  # deleted meanwhile: its messages went with it
            continue
        status_code, error, started = None, None, time.perf_counter()
        try:
            status_code = send(client, destination, message, config)
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}" + (" (redirects are not followed)" if 300 <= status_code < 400 else "")
        except RefusedAddress as refused:
            error = refused.message
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:ERROR_TEXT]
        if not attempts:
            unrecorded_since = started
        attempts.append({"message": message, "status_code": status_code, "error": error, "now": clock(),
                         "duration_ms": round((time.perf_counter() - started) * 1000)})
        if time.perf_counter() - unrecorded_since >= RECORD_EVERY_S:
            _record(engine, committer, attempts, config)
            attempts = []
    _record(engine, committer, attempts, config)
    return len(claimed)


def _record(engine: Engine, committer: GroupCommitter | None, attempts: list[dict[str, Any]],
            config: DeliveryConfig) -> None:
    if not attempts:
        return

    def record(conn: Connection) -> None:
        for attempt in attempts:
            outbox.record_attempt(conn, **attempt, policy=config.policy)

    if committer is None:
        write_transaction(engine, record)
    else:
        committer.submit(record, background=True).add_done_callback(_log_failed_record)


def _log_failed_record(recorded: Future[None]) -> None:
    if recorded.exception() is not None:  # the messages are sent again after their lease
        log.error("recording delivery attempts failed", exc_info=recorded.exception())


def _destination(engine: Engine, destination_id: int) -> Destination | None:
    with reader(engine).connect() as conn:
        try:
            return get_destination(conn, destination_id=destination_id)
        except NotFound:
            return None


class DeliveryWorker:
    """A thread delivering the outbox: what this process enqueues as soon as it commits (handed over,
    already claimed), and what is due (retries, other processes' and crashed workers' messages)
    at once when this process enqueued or replayed, else every ``poll_s``."""

    def __init__(self, engine: Engine, config: DeliveryConfig, committer: GroupCommitter) -> None:
        self._engine = engine
        self._config = config
        self._committer = committer
        self._stop = threading.Event()
        self._client = httpx.Client(follow_redirects=False, trust_env=False)
        self._thread = threading.Thread(target=self._run, name="delivery", daemon=True)

    def start(self) -> DeliveryWorker:
        outbox.handoff.open(self._config.lease)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop taking messages, send those in hand, and stop; call before closing the committer."""
        outbox.handoff.close()
        self._stop.set()
        outbox.handoff.wake.set()
        self._thread.join()
        self._client.close()

    def _run(self) -> None:
        while True:
            outbox.handoff.wake.clear()  # before looking: a commit while we look makes the wait below return at once
            stopping = self._stop.is_set()
            try:
                attempted = deliver(self._engine, self._client, self._config, outbox.handoff.take(),
                                    committer=self._committer)
                if not stopping:
                    attempted += deliver_due(self._engine, self._client, self._config, committer=self._committer)
            except Exception:  # the store down or busy, or a defect: the messages wait, stored, for the next round
                log.exception("delivering the outbox failed; retrying")  # a thread that ended would send none again
                attempted = 0
            if stopping:
                return
            if attempted < CLAIM_BATCH:
                outbox.handoff.wake.wait(self._config.poll_s)
