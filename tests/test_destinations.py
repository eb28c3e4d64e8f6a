"""Destinations: SSRF refusals, HMAC signatures a receiver can check, the outbox's retries, backoff,
dead letters, replay and leases against a real HTTP receiver on loopback, audience syncs, and a
live server from event to webhook."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import Connection, Engine, select

from cdp.audiences.membership import recompute
from cdp.audiences.schemas import parse_audience
from cdp.audiences.service import save_audience
from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.destinations.addresses import Allowlist, RefusedAddress, check_url
from cdp.destinations.deliver import DeliveryConfig, DeliveryWorker, deliver_due
from cdp.destinations.outbox import claim_due, enqueue, replay
from cdp.destinations.schemas import parse_destination
from cdp.destinations.service import create_destination
from cdp.destinations.signing import HEADER, verify
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.store.group_commit import GroupCommitter
from cdp.store.tables import delivery_attempts, outbox
from tests.conftest import start_server, wait_until

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
SECRET = "s3cret-s3cret-s3cret"
LOOPBACK = Allowlist.parse("127.0.0.1")
INGEST = IngestConfig.from_settings(Settings())


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 answering ``fail_first`` requests with 500, then 200 (or ``status``)."""

    fail_first: int = 0
    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                code = 500 if len(receiver.received) <= receiver.fail_first else receiver.status
                self.send_response(code)
                if code == 302:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), found.handler())
    found.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://localhost:8080/", "http://10.1.2.3/", "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/",
    "http://0.0.0.0/", "http://100.64.0.1/", "ftp://93.184.216.34/", "file:///etc/passwd", "http://user:pw@93.184.216.34/",
    "http://no-such-host.invalid/",
])
def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(RefusedAddress):
        check_url(url, Allowlist.parse(""))


def test_allowlist_admits_hosts_and_networks() -> None:
    assert check_url("http://93.184.216.34/hook", Allowlist.parse("")).address == "93.184.216.34"
    assert check_url("http://127.0.0.1:9/", Allowlist.parse("127.0.0.0/8")).port == 9
    assert check_url("https://10.1.2.3/", Allowlist.parse("10.1.2.3")).scheme == "https"
    with pytest.raises(RefusedAddress):
        check_url("http://10.1.2.4/", Allowlist.parse("10.1.2.3"))


def config(**overrides: object) -> DeliveryConfig:
    values = {"destinations_allowlist": "127.0.0.1", "delivery_backoff_s": 1.0, "delivery_max_attempts": 5,
              "delivery_lease_s": 30.0, "delivery_timeout_s": 5.0, **overrides}
    return DeliveryConfig.from_settings(Settings(**values))  # type: ignore[arg-type]


def register(engine: Engine, url: str, *, allowlist: Allowlist = LOOPBACK, **extra: object) -> int:
    spec = parse_destination({"type": "webhook", "name": f"hook-{time.monotonic_ns()}", "url": url,
                              "secret": SECRET, **extra})
    with engine.begin() as conn:
        return create_destination(conn, spec=spec, allowlist=allowlist, now=NOW).id


def queue(engine: Engine, destination_id: int, *keys: str) -> None:
    with engine.begin() as conn:
        enqueue(conn, destination_ids=[destination_id], now=NOW,
                messages=[(key, {"type": "track", "event": "E", "messageId": key}) for key in keys])


def state(engine: Engine) -> list[tuple[str, int, datetime]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(  # type: ignore[misc]
            select(outbox.c.status, outbox.c.attempts, outbox.c.next_attempt_at).order_by(outbox.c.id))]


def test_registration_refuses_private_urls_unless_allowlisted(engine: Engine, receiver: Receiver) -> None:
    with pytest.raises(RefusedAddress, match="CDP_DESTINATIONS_ALLOWLIST"):
        register(engine, receiver.url, allowlist=Allowlist.parse(""))
    assert register(engine, receiver.url) > 0


def test_retries_with_backoff_then_exactly_one_success_signed(engine: Engine, receiver: Receiver) -> None:
    receiver.fail_first = 3
    destination_id = register(engine, receiver.url)
    queue(engine, destination_id, "k1")
    settings = config()
    with httpx.Client() as client:
        at = NOW
        for waited in (1, 2, 4):  # exponential: 1 s, 2 s, 4 s after the 1st, 2nd, 3rd failure
            assert deliver_due(engine, client, settings, now=at) == 1
            [(status, attempts, due)] = state(engine)
            assert status == "pending" and attempts == waited.bit_length()
            assert due == at + timedelta(seconds=waited)
            assert deliver_due(engine, client, settings, now=due - timedelta(milliseconds=100)) == 0, "not yet due"
            at = due
        assert deliver_due(engine, client, settings, now=at) == 1
        assert deliver_due(engine, client, settings, now=at + timedelta(days=1)) == 0
    assert [row[:2] for row in state(engine)] == [("delivered", 4)]
    keys = [headers["Idempotency-Key"] for headers, _ in receiver.received]
    assert keys == ["k1"] * 4, "the same key on every attempt: the receiver keeps one"
    for headers, body in receiver.received:
        assert verify(SECRET, headers[HEADER], body, now=int(time.time()))
        assert not verify("another-secret-value", headers[HEADER], body, now=int(time.time()))
        assert not verify(SECRET, headers[HEADER], body + b" ", now=int(time.time()))
        assert not verify(SECRET, headers[HEADER], body, now=int(time.time()) + 3600), "too old"
    assert orjson.loads(receiver.received[-1][1])["messageId"] == "k1"
    with engine.connect() as conn:
        log = conn.execute(select(delivery_attempts.c.attempt, delivery_attempts.c.status_code)
                           .order_by(delivery_attempts.c.id)).all()
    assert [tuple(row) for row in log] == [(1, 500), (2, 500), (3, 500), (4, 200)]


def test_dead_letter_then_replay(engine: Engine, receiver: Receiver) -> None:
    receiver.fail_first = 2
    destination_id = register(engine, receiver.url)
    queue(engine, destination_id, "k1")
    settings = config(delivery_max_attempts=2)
    with httpx.Client() as client:
        deliver_due(engine, client, settings, now=NOW)
        deliver_due(engine, client, settings, now=NOW + timedelta(hours=1))
        assert [row[:2] for row in state(engine)] == [("dead", 2)]
        assert deliver_due(engine, client, settings, now=NOW + timedelta(days=1)) == 0, "dead stays dead"
        with engine.begin() as conn:
            assert replay(conn, destination_id=destination_id, now=NOW) == 1
        assert deliver_due(engine, client, settings, now=NOW + timedelta(seconds=1)) == 1
    assert [row[:2] for row in state(engine)] == [("delivered", 1)]


def test_redirects_are_failures_and_a_crashed_delivery_is_taken_up_after_its_lease(
    engine: Engine, receiver: Receiver
) -> None:
    receiver.status = 302
    destination_id = register(engine, receiver.url)
    queue(engine, destination_id, "k1")
    settings = config()
    with httpx.Client() as client:
        deliver_due(engine, client, settings, now=NOW)
        with engine.connect() as conn:
            assert "redirects are not followed" in conn.execute(select(outbox.c.last_error)).scalar_one()
        receiver.status = 200
        queue(engine, destination_id, "k2")
        # A worker claims k2 and dies before marking it (kill -9): nothing is lost, only delayed.
        with engine.begin() as conn:
            assert [c.idempotency_key for c in claim_due(conn, now=NOW, lease=settings.lease, limit=10)] == ["k2"]
        later = NOW + timedelta(seconds=5)
        assert deliver_due(engine, client, settings, now=later) == 1  # k1's retry; k2 is leased
        assert deliver_due(engine, client, settings, now=later + settings.lease) == 1
    assert [row[0] for row in state(engine)] == ["delivered", "delivered"]


def test_a_server_worker_sends_what_its_process_commits_at_once_and_nothing_rolled_back(
    engine: Engine, receiver: Receiver
) -> None:
    destination_id = register(engine, receiver.url)
    settings = config(delivery_poll_s=300.0)  # only the hand-over can send within the wait below
    now = datetime.now(UTC)

    def enqueue_then(key: str, *, fail: bool) -> Callable[[Connection], datetime]:
        def work(conn: Connection) -> datetime:
            enqueue(conn, destination_ids=[destination_id], now=now,
                    messages=[(key, {"type": "track", "event": "E", "messageId": key})])
            if fail:
                raise ValueError("this unit rolls back to its savepoint")
            return conn.execute(select(outbox.c.next_attempt_at).where(outbox.c.idempotency_key == key)).scalar_one()
        return work

    committer = GroupCommitter.for_store(engine)
    worker = DeliveryWorker(engine, settings, committer).start()
    try:
        kept = committer.submit(enqueue_then("kept", fail=False))
        dropped = committer.submit(enqueue_then("dropped", fail=True))
        assert kept.result() == now + settings.lease, "written claimed for the worker: no poll's claim takes it"
        with pytest.raises(ValueError):
            dropped.result()
        wait_until(lambda: receiver.received, timeout_s=10, every_s=0.01)
    finally:
        worker.stop()
        committer.close()
    assert [orjson.loads(body)["messageId"] for _, body in receiver.received] == ["kept"]
    assert [row[0:2] for row in state(engine)] == [("delivered", 1)]
    queue(engine, destination_id, "after")  # no worker: written due at once, for any worker's claim
    assert state(engine)[-1][2] == NOW


def test_the_worker_outlives_a_failed_round(engine: Engine, receiver: Receiver,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    destination_id = register(engine, receiver.url)
    queue(engine, destination_id, "due")  # written due: for the worker's poll, not handed over
    rounds = []

    def fails_once(*args: object, **kwargs: object) -> int:
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("a defect in one round")
        return deliver_due(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("cdp.destinations.deliver.deliver_due", fails_once)
    committer = GroupCommitter.for_store(engine)
    worker = DeliveryWorker(engine, config(delivery_poll_s=0.05), committer).start()
    try:
        wait_until(lambda: receiver.received, timeout_s=10, every_s=0.01)
    finally:
        worker.stop()
        committer.close()
    assert len(rounds) > 1 and [orjson.loads(body)["messageId"] for _, body in receiver.received] == ["due"]


def test_audience_changes_become_identify_and_track_calls(engine: Engine, receiver: Receiver) -> None:
    destination_id = register(engine, receiver.url)
    with engine.begin() as conn:
        source_id = create_source(conn, name="app", now=NOW)[0].id
        ingest(conn, source_id=source_id, envelope=Envelope(received_at=NOW), config=INGEST, live=False, messages=[
            {"type": "identify", "userId": "ann", "traits": {"plan": "pro", "email": "ann@example.com"}}])
    definition = parse_audience({"key": "pro", "name": "Pro plan", "destinations": [destination_id],
                                 "condition": {"type": "trait", "trait": "plan", "op": "eq", "value": "pro"}})
    with engine.begin() as conn:
        save_audience(conn, definition=definition, now=NOW)
        recompute(conn, as_of=NOW)
        recompute(conn, as_of=NOW, deliver=False)  # nothing changed: nothing queued
    with httpx.Client() as client:
        assert deliver_due(engine, client, config(), now=NOW) == 2
    identify, track = (orjson.loads(body) for _, body in receiver.received)
    assert identify["type"] == "identify" and identify["userId"] == "ann" and identify["traits"] == {"pro": True}
    assert track["event"] == "Audience Entered" and track["properties"]["audience_key"] == "pro"
    assert track["context"]["personas"]["computation_key"] == "pro"
    assert track["context"]["traits"] == {"email": "ann@example.com"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hooked_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A live server whose destinations may reach loopback, retrying quickly."""
    home = tmp_path_factory.mktemp("serve")
    url = request.getfixturevalue("postgres_databases")() if request.param == "postgresql" else None
    extra = {"CDP_DESTINATIONS_ALLOWLIST": "127.0.0.1", "CDP_DELIVERY_BACKOFF_S": "0.2"}
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        server = start_server(Settings(home=home / "home", database_url=url), workers=2, log=home / "serve.log")
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    yield server
    server.kill()


def test_live_server_event_to_webhook(hooked_server, receiver: Receiver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    receiver.fail_first = 1
    admin = {"Authorization": f"Bearer {hooked_server.admin_token}"}
    base = hooked_server.url
    refused = httpx.post(f"{base}/v1/destinations", headers=admin,
                         json={"type": "webhook", "name": "inside", "url": "http://10.0.0.1/", "secret": SECRET})
    assert refused.status_code == 400 and "CDP_DESTINATIONS_ALLOWLIST" in refused.json()["error"]["message"]
    created = httpx.post(f"{base}/v1/destinations", headers=admin,
                         json={"type": "webhook", "name": "crm", "url": receiver.url, "secret": SECRET})
    assert created.status_code == 201, created.text
    destination_id = created.json()["data"]["id"]
    assert "secret" not in httpx.get(f"{base}/v1/destinations/{destination_id}", headers=admin).json()["data"]
    condition = {"type": "event", "event": "Order Completed", "at_least": 2, "within_days": 7}
    preview = httpx.post(f"{base}/v1/audiences/preview", headers=admin, json={"condition": condition})
    assert preview.json()["data"] == {"size": 0, "sample": []}
    audience = httpx.post(f"{base}/v1/audiences", headers=admin,
                          json={"key": "repeat_buyers", "condition": condition, "destinations": [destination_id]})
    assert audience.status_code == 201, audience.text
    bad = httpx.post(f"{base}/v1/audiences", headers=admin, json={"key": "x", "condition": {"type": "nope"}})
    assert bad.status_code == 400

    batch = [{"type": "track", "userId": "live-ann", "event": "Order Completed", "messageId": f"o{n}"} for n in range(2)]
    assert httpx.post(f"{base}/v1/batch", json={"batch": batch}, auth=(hooked_server.write_key, "")).is_success
    hooked_server.wait_attributed()
    deadline = time.monotonic() + 30
    while len(receiver.received) < 3 and time.monotonic() < deadline:  # a failure, then identify and track
        time.sleep(0.05)
    events = [orjson.loads(body).get("event") for _, body in receiver.received]
    assert events.count("Audience Entered") == 1, events
    assert all(verify(SECRET, headers[HEADER], body, now=int(time.time())) for headers, body in receiver.received)
    audiences = httpx.get(f"{base}/v1/profiles/user_id:live-ann/audiences", headers=admin).json()["data"]
    assert [a["key"] for a in audiences] == ["repeat_buyers"]
    assert httpx.get(f"{base}/v1/audiences/repeat_buyers", headers=admin).json()["data"]["size"] == 1
    log = httpx.get(f"{base}/v1/destinations/{destination_id}/deliveries", headers=admin).json()["data"]
    assert sorted(m["status"] for m in log) == ["delivered", "delivered"]
    assert sum(len(m["log"]) for m in log) == 3


def test_cli_audiences_destinations_and_backfill_without_deliveries(settings: Settings, tmp_path: Path) -> None:
    from tests.test_cli import assert_user_error, cdp

    assert cdp(settings, "init").returncode == 0
    assert_user_error(cdp(settings, "destinations", "create", "inside", "--url", "http://127.0.0.1:9/"),
                      "CDP_DESTINATIONS_ALLOWLIST")
    created = cdp(settings, "destinations", "create", "outside", "--url", "http://93.184.216.34/hook")
    assert created.returncode == 0, created.stderr
    definition = tmp_path / "aud.json"
    definition.write_text(orjson.dumps({"key": "buyers", "destinations": [1], "condition": {
        "type": "event", "event": "Order Completed"}}).decode())
    assert "0 members" in cdp(settings, "audiences", "create", "--file", str(definition)).stdout
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(orjson.dumps({"type": "track", "userId": f"u{n}", "event": "Order Completed",
                                              "timestamp": "2026-01-01T00:00:00Z"}).decode() for n in range(3)))
    imported = cdp(settings, "import", str(events), "--backfill")
    assert "3 entered" in imported.stdout, imported.stdout + imported.stderr
    assert "buyers" in cdp(settings, "audiences", "list").stdout
    preview = tmp_path / "preview.json"
    preview.write_text('{"condition": {"type": "audience", "audience": "buyers"}}')
    assert "3 profiles" in cdp(settings, "audiences", "preview", "--file", str(preview)).stdout
    assert "Order Completed" in cdp(settings, "audiences", "show", "buyers").stdout
    assert "0 entered" in cdp(settings, "audiences", "recompute").stdout
    assert "0 messages queued" in cdp(settings, "destinations", "replay", "1").stdout
    listed = cdp(settings, "destinations", "deliveries", "1")
    assert listed.returncode == 0 and "aud-" not in listed.stdout, "a backfill sends nothing"
    definition.write_text('{"key": "x", "condition": {"type": "trait", "trait": "a", "op": "in", "value": 1}}')
    assert_user_error(cdp(settings, "audiences", "create", "--file", str(definition)), "non-empty list")
    assert_user_error(cdp(settings, "audiences", "show", "nope"), "no audience with key 'nope'")
