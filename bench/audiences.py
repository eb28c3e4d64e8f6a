"""Audiences and journeys benchmark: event-to-webhook latency on a live server, and batch recomputation.

    python -m bench.audiences               # 20 s at 1,000 events/s; recomputation over 1M profiles
    python -m bench.audiences --quick       # 8 s; 100k profiles
    python -m bench.audiences --postgres    # PostgreSQL instead of SQLite (both: --stores sqlite,postgresql)

1. **Event to webhook**: ``cdp serve --workers 2`` on an empty store with 20 audiences (live, each
   evaluated for the events and trait changes its conditions read) and 5 journeys, each sending at once to a webhook receiver on
   loopback. A paced client posts ``/v1/batch`` requests of 20 events every 20 ms (1,000 events/s by
   default); one event in ten is a journey's entry event. For each of those, the latency is from the
   HTTP 200 of its request to the receiver reading the journey's send. Beside it, measured in the
   same run: the batch requests' own round trip (what the client waits for), and a POST from this
   process straight to the receiver (loopback delivery with no CDP in between).
   Then, to see where the server's time goes, the attribution follower alone in this process
   (events/s over ``--follower-events`` pending events): bare, with the 20 audiences, with the journeys too.
2. **Batch recomputation**: the same 20 audiences computed over a store of N people (the
   bench-profiles store: 3 identifiers and 6 traits each), first when everyone who qualifies enters,
   then again when nothing changed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import uvloop

from bench.load import collector_paused, headers_for, percentile
from bench.profiles import fill_people, scratch_store
from bench.report import Report, run
from cdp.audiences.membership import recompute
from cdp.audiences.schemas import parse_audience
from cdp.audiences.service import save_audience
from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.demo.receiver import WebhookReceiver
from cdp.demo.server import start_server
from cdp.destinations.addresses import Allowlist
from cdp.destinations.schemas import parse_destination
from cdp.destinations.service import create_destination
from cdp.events.attribution import attribute_pending
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.journeys.schemas import parse_journey
from cdp.journeys.service import save_journey
from cdp.setup import prepare_store
from cdp.store.db import write_transaction

ADMIN_TOKEN = "bench-admin-token-5c1d0e9a7b3f4e21"
WRITE_KEY = "bench-write-key-audiences-93ad1c"
BATCH = 20
TRIGGER_SHARE = 10  # one event in ten enters a journey
JOURNEYS = 5
USERS = 2000


def trait(name: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"type": "trait", "trait": name, "op": op, **({"value": value} if value is not None else {})}


def every(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"type": "and", "conditions": list(conditions)}


# Twenty audiences over the bench-profiles traits (plan, country, lifetime_orders, newsletter,
# last_seen_page, name) and over events, from 1 % to 25 % of the people.
AUDIENCES: list[tuple[str, dict[str, Any]]] = [
    *[(f"plan_{plan}", trait("plan", "eq", plan)) for plan in ("free", "starter", "pro", "enterprise")],
    *[(f"{plan}_{country.lower()}", every(trait("plan", "eq", plan), trait("country", "eq", country)))
      for plan, country in (("pro", "NO"), ("pro", "SE"), ("enterprise", "DE"), ("free", "FR"))],
    ("heavy_buyers", trait("lifetime_orders", "gte", 35)),
    ("light_buyers", trait("lifetime_orders", "lte", 2)),
    ("mid_buyers", every(trait("lifetime_orders", "gte", 10), trait("lifetime_orders", "lte", 12))),
    ("subscribed_buyers", every(trait("newsletter", "eq", True), trait("lifetime_orders", "gte", 30))),
    ("product_1_fans", trait("last_seen_page", "starts_with", "/products/p-1")),
    ("page_7", trait("last_seen_page", "ends_with", "7")),
    ("page_42", trait("last_seen_page", "contains", "p-42")),
    ("nordic_unsubscribed", every(trait("name", "exists"), trait("country", "in", ["NO", "SE"]),
                                  trait("newsletter", "eq", False))),
    ("paying_regulars", every({"type": "not", "condition": trait("plan", "in", ["free", "starter"])},
                              trait("lifetime_orders", "gt", 20))),
    ("free_or_new", {"type": "or", "conditions": [trait("plan", "eq", "free"), trait("lifetime_orders", "lt", 3)]}),
    ("heavy_in_de", every({"type": "audience", "audience": "heavy_buyers"}, trait("country", "eq", "DE"))),
    ("recent_viewers", {"type": "event", "event": "Product Viewed", "at_least": 3, "within_days": 7}),
]


def journey(n: int, destination_id: int) -> dict[str, Any]:
    return {"key": f"bench_journey_{n}", "entry": {"event": "Checkout Started", "filters": [
        {"property": "variant", "op": "eq", "value": n}]}, "reentry_key": "checkout_id",
        "steps": [{"id": "send", "type": "send", "destination": destination_id, "event": f"Bench Offer {n}"}]}


# -- 1. event to webhook ----------------------------------------------------------------------------


def event_batches(count: int) -> list[tuple[bytes, list[str]]]:
    """``count`` request bodies of BATCH events, with the messageIds of their journey entry events."""
    import orjson

    bodies = []
    serial = 0
    for _ in range(count):
        batch, triggers = [], []
        for _ in range(BATCH):
            serial += 1
            user = f"bench-user-{serial * 7919 % USERS}"
            message_id = str(uuid.uuid4())
            if serial % TRIGGER_SHARE == 0:
                batch.append({"type": "track", "userId": user, "event": "Checkout Started", "messageId": message_id,
                              "properties": {"variant": serial // TRIGGER_SHARE % JOURNEYS, "checkout_id": message_id}})
                triggers.append(message_id)
            else:
                batch.append({"type": "track", "userId": user, "event": "Product Viewed", "messageId": message_id,
                              "properties": {"product_id": f"p-{serial % 500}", "price": serial % 90 + 10}})
        bodies.append((orjson.dumps({"batch": batch}), triggers))
    return bodies


async def paced_load(url: str, bodies: list[tuple[bytes, list[str]]], *, rate: float
                     ) -> tuple[dict[str, float], list[float], int, float]:
    """Post the bodies at ``rate`` events/s; (200 time per trigger messageId, request ms, errors, seconds)."""
    acknowledged: dict[str, float] = {}
    round_trips: list[float] = []
    errors = 0
    interval = BATCH / rate
    headers = headers_for(WRITE_KEY)

    async def post(session: aiohttp.ClientSession, body: bytes, triggers: list[str]) -> None:
        nonlocal errors
        started = time.perf_counter()
        async with session.post(f"{url}/v1/batch", data=body, headers=headers) as answer:
            await answer.read()
            done = time.time()
            if answer.status != 200:
                errors += 1
                return
        round_trips.append((time.perf_counter() - started) * 1000)
        for message_id in triggers:
            acknowledged[message_id] = done

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        with collector_paused():
            tasks = []
            began = time.perf_counter()
            for index, (body, triggers) in enumerate(bodies):
                delay = began + index * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(session, body, triggers)))
            await asyncio.gather(*tasks)
            seconds = time.perf_counter() - began
    return acknowledged, round_trips, errors, seconds


def direct_loopback(receiver: WebhookReceiver, count: int) -> list[float]:
    """Milliseconds from POSTing straight to the receiver to the receiver reading it (the floor)."""
    latencies = []
    with httpx.Client() as client:
        for n in range(count):
            marker = f"direct-{n}"
            sent = time.time()
            client.post(receiver.url, json={"marker": marker})
            arrived = next(r.at for r in reversed(receiver.received) if r.body.get("marker") == marker)
            latencies.append((arrived - sent) * 1000)
            time.sleep(0.005)
    return latencies


def set_up(url: str, receiver: WebhookReceiver) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120) as api:
        destination = api.post("/v1/destinations", json={"type": "webhook", "name": "bench", "url": receiver.url})
        destination.raise_for_status()
        destination_id = destination.json()["data"]["id"]
        for key, condition in AUDIENCES:
            api.post("/v1/audiences", json={"key": key, "condition": condition}).raise_for_status()
        for n in range(JOURNEYS):
            api.post("/v1/journeys", json=journey(n, destination_id)).raise_for_status()


def event_to_webhook(store: str, args: argparse.Namespace, log) -> None:  # type: ignore[no-untyped-def]
    count = int(args.seconds * args.rate / BATCH)
    warmup = int(args.warmup * args.rate / BATCH)
    bodies = event_batches(warmup + count)
    for label, env in (("as shipped", {}), ("behind a burst, attribution at once (CDP_ATTRIBUTION_IDLE_MS=0)",
                                             {"CDP_ATTRIBUTION_IDLE_MS": "0"})):
        receiver = WebhookReceiver().start()
        with scratch_store(store, "audiences", args) as (home, database_url):
            server = start_server(
                Settings(home=home, database_url=database_url), workers=2, log=home / "server.log",
                write_keys=WRITE_KEY, admin_token=ADMIN_TOKEN, env={"CDP_DESTINATIONS_ALLOWLIST": "127.0.0.1", **env})
            try:
                set_up(server.url, receiver)
                uvloop.run(paced_load(server.url, bodies[:warmup], rate=args.rate))
                acknowledged, round_trips, errors, seconds = uvloop.run(
                    paced_load(server.url, bodies[warmup:], rate=args.rate))
                receiver.wait_for(sum(len(triggers) for _, triggers in bodies), timeout_s=60)
            finally:
                server.stop()
        receipts = {r.body["properties"]["journey_context"]["triggering_event"]["messageId"]: r.at
                    for r in receiver.received if "properties" in r.body}
        latencies = [(receipts[m] - at) * 1000 for m, at in acknowledged.items() if m in receipts]
        floor = direct_loopback(receiver, 200)
        receiver.stop()
        missing = len(acknowledged) - len(latencies)
        log(f"  {store}, {label}: {count * BATCH / seconds:,.0f} events/s sent for {seconds:.1f} s, "
            f"{len(acknowledged):,} journey entries, {errors} request errors, {missing} sends not received")
        log(f"    event 200 -> webhook receipt: p50 {percentile(latencies, 50):.0f} ms, "
            f"p99 {percentile(latencies, 99):.0f} ms, max {max(latencies, default=float('nan')):.0f} ms (goal: p99 < 250 ms)")
        log(f"    baselines: batch request round trip p50 {percentile(round_trips, 50):.1f} ms, "
            f"p99 {percentile(round_trips, 99):.1f} ms; direct loopback POST to the receiver "
            f"p50 {percentile(floor, 50):.1f} ms, p99 {percentile(floor, 99):.1f} ms")


def follower_throughput(store: str, args: argparse.Namespace, log) -> None:  # type: ignore[no-untyped-def]
    """Where the follower's time goes: events attributed per second in this process (no server, no
    requests), on an empty store, bare, with the 20 audiences, and with the 5 journeys too."""
    import orjson

    messages = [m for body, _ in event_batches(int(args.follower_events / BATCH)) for m in orjson.loads(body)["batch"]]
    rates = {}
    for label, audiences, journeys in (("bare", False, False), ("20 audiences", True, False),
                                       ("20 audiences + 5 journeys", True, True)):
        with scratch_store(store, "follower", args) as (home, database_url):
            settings = Settings(home=home, database_url=database_url, destinations_allowlist="127.0.0.1")
            engine = prepare_store(settings)
            config = IngestConfig.from_settings(settings)
            now = datetime.now(UTC)
            try:
                with engine.begin() as conn:
                    source_id = create_source(conn, name="bench", now=now)[0].id
                    destination_id = create_destination(conn, spec=parse_destination(
                        {"name": "bench", "url": "http://127.0.0.1:9/hook"}), allowlist=Allowlist.parse("127.0.0.1"),
                        now=now).id
                    for key, condition in AUDIENCES if audiences else ():
                        save_audience(conn, definition=parse_audience({"key": key, "condition": condition}), now=now)
                    for n in range(JOURNEYS if journeys else 0):
                        save_journey(conn, definition=parse_journey(journey(n, destination_id)), now=now)
                    ingest(conn, source_id=source_id, messages=messages, envelope=Envelope(received_at=now),
                           config=config, defer_attribution=True)
                started = time.perf_counter()
                while write_transaction(engine, lambda conn: attribute_pending(
                        conn, config=config, now=datetime.now(UTC), limit=500)):
                    pass
                rates[label] = len(messages) / (time.perf_counter() - started)
            finally:
                engine.dispose()
    log(f"  {store} attribution follower alone, events/s: " + ", ".join(f"{label} {rate:,.0f}"
                                                                         for label, rate in rates.items()))


# -- 2. batch recomputation -------------------------------------------------------------------------


def batch_recompute(store: str, args: argparse.Namespace, log) -> None:  # type: ignore[no-untyped-def]
    with scratch_store(store, "recompute", args) as (home, database_url):
        fill_people(home, database_url, args.profiles, log=lambda line: log(f"  {store}: {line}"))
        engine = prepare_store(Settings(home=home, database_url=database_url))
        try:
            now = datetime.now(UTC)
            with engine.begin() as conn:
                for key, condition in AUDIENCES:
                    save_audience(conn, definition=parse_audience({"key": key, "condition": condition}), now=now)
            for label in ("first (everyone who qualifies enters)", "again (nothing changed)"):
                started = time.perf_counter()
                changes = write_transaction(engine, lambda conn: recompute(conn, as_of=now, deliver=False))
                elapsed = time.perf_counter() - started
                log(f"  {store} recompute of {len(AUDIENCES)} audiences over {args.profiles:,} profiles, {label}: "
                    f"{elapsed:.1f} s, {sum(c.size or 0 for c in changes):,} memberships, "
                    f"{sum(c.entered for c in changes):,} entered")
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 s of load, 100k profiles")
    parser.add_argument("--profiles", type=int, help="people in the recomputation store [1M; 100k with --quick]")
    parser.add_argument("--seconds", type=float, help="measured seconds of load [20; 8 with --quick]")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--stores", help="comma-separated: sqlite, postgresql [sqlite]")
    parser.add_argument("--parts", default="live,follower,batch", help="comma-separated: live, follower, batch")
    parser.add_argument("--follower-events", type=int, default=10_000, help="events attributed per follower run")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    args.profiles = args.profiles or (100_000 if args.quick else 1_000_000)
    args.seconds = args.seconds or (8.0 if args.quick else 20.0)
    stores = args.stores or ("postgresql" if args.postgres else "sqlite")
    report = Report("audiences")
    log = report.say
    log(report.machine())
    for store in [s.strip() for s in stores.split(",") if s.strip()]:
        if "live" in args.parts:
            event_to_webhook(store, args, log)
        if "follower" in args.parts:
            follower_throughput(store, args, log)
        if "batch" in args.parts:
            batch_recompute(store, args, log)
    report.write()


if __name__ == "__main__":
    run(main)
