"""Load generator for ``POST /v1/batch``: pre-built Segment batches sent by concurrent keep-alive clients.

Client and server share the same few cores, so every byte is built before the clock starts:
the timed loop only picks the next pre-serialized body, posts it and notes the latency.

Ad-hoc use against a running server::

    python -m bench.load --url http://127.0.0.1:8080 --write-key KEY --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import math
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import uvloop

BATCH_SIZE = 100
USERS = 3000
SDK_VERSION = "2.4.0"  # segment-analytics-python, whose message shape is copied below
OK = b'{"success":true}'

# A small catalogue, so that properties look like a shop's and vary in size as real ones do.
TRACK_EVENTS = ("Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Order Completed", "Signed Up")
PAGES = (("Home", "/"), ("Pricing", "/pricing"), ("Docs", "/docs/getting-started"), ("Blog", "/blog/launch-week"),
         ("Product", "/products/p-1042"), ("Checkout", "/checkout"))
PLANS = ("free", "starter", "pro", "enterprise")


@dataclass(frozen=True)
class RequestBody:
    data: bytes
    message_ids: tuple[str, ...]


@dataclass
class LoadResult:
    requests: int = 0  # answered 200
    events: int = 0  # messages in those requests
    elapsed_s: float = 0.0  # from the start to the last answer
    errors: int = 0  # non-200 answers and failed requests
    rejections: int = 0  # 200 answers that reported quarantined messages
    latencies_ms: list[float] = field(default_factory=list)  # of the 200 answers
    acknowledged_ids: list[str] = field(default_factory=list)  # messageIds of the 200 answers
    error_samples: list[str] = field(default_factory=list)
    bodies_used: int = 0
    exhausted: bool = False  # the pre-built bodies ran out before the time was up

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The load generator's garbage collector off while it sends on a schedule: its full passes over
    the client's own objects paused it for up to 130 ms (bench.recs), and every request due meanwhile
    went out late, its latency (counted from when it was due) charged to the server."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was observed, not an interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def make_message(rng: random.Random, now: datetime) -> dict:
    """One message shaped like segment-analytics-python's ``_enqueue`` output (key order included)."""
    user = rng.randrange(USERS)
    kind = rng.choices(("track", "page", "identify"), weights=(60, 30, 10))[0]
    # The SDK stamps ``timestamp`` at the call and sends a while later, so it trails sentAt a bit.
    timestamp = (now - timedelta(milliseconds=rng.randrange(50, 10_000))).isoformat(timespec="milliseconds")
    # A third of the traffic is from visitors not yet identified (anonymousId only).
    anonymous = kind == "page" and rng.random() < 0.33
    user_id = None if anonymous else f"user-{user:06d}"
    anonymous_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if anonymous else None
    context = {"library": {"name": "analytics-python", "version": SDK_VERSION}}
    message_id = str(uuid.uuid4())
    if kind == "track":
        event = rng.choice(TRACK_EVENTS)
        properties = {"product_id": f"p-{rng.randrange(5000)}", "price": round(rng.uniform(5, 200), 2),
                      "currency": "USD"}
        if event == "Order Completed":
            properties["order_id"] = f"o-{rng.randrange(10**9)}"
        return {"integrations": {}, "anonymousId": anonymous_id, "properties": properties, "timestamp": timestamp,
                "context": context, "userId": user_id, "type": "track", "event": event, "messageId": message_id}
    if kind == "page":
        name, path = rng.choice(PAGES)
        properties = {"path": path, "url": f"https://example.com{path}", "title": name}
        return {"integrations": {}, "anonymousId": anonymous_id, "properties": properties, "timestamp": timestamp,
                "category": None, "context": context, "userId": user_id, "type": "page", "name": name,
                "messageId": message_id}
    traits = {"email": f"user{user}@example.com", "name": f"User {user}", "plan": rng.choice(PLANS)}
    return {"integrations": {}, "anonymousId": None, "timestamp": timestamp, "context": context, "type": "identify",
            "userId": user_id, "traits": traits, "messageId": message_id}


def make_bodies(count: int, *, write_key: str, batch_size: int = BATCH_SIZE, seed: int = 1) -> list[RequestBody]:
    """``count`` serialized batch requests as the SDK posts them (batch, sentAt, writeKey).

    The user mix is seeded, the messageIds are fresh uuid4s: every call gives new, unique ids.
    """
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies = []
    for _ in range(count):
        messages = [make_message(rng, now) for _ in range(batch_size)]
        body = {"batch": messages, "sentAt": now.isoformat(), "writeKey": write_key}
        bodies.append(RequestBody(orjson.dumps(body), tuple(m["messageId"] for m in messages)))
    return bodies


def headers_for(write_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json",
            "User-Agent": f"analytics-python/{SDK_VERSION}"}


async def run_load(
    base_url: str,
    bodies: list[RequestBody],
    *,
    write_key: str,
    concurrency: int = 16,
    seconds: float | None = None,
    requests: int | None = None,
) -> LoadResult:
    """Post ``bodies`` in order from ``concurrency`` keep-alive clients.

    Stops after ``seconds``, after ``requests`` requests, or when the bodies run out; requests
    in flight then finish and count. ``bodies_used`` tells where a following run can start.
    """
    if seconds is None and requests is None:
        raise ValueError("give seconds or requests")
    url = base_url.rstrip("/") + "/v1/batch"
    headers = headers_for(write_key)
    limit = len(bodies) if requests is None else min(requests, len(bodies))
    result = LoadResult()
    acknowledged: list[int] = []  # body indexes: expanding to ids is left until after the clock
    next_body = 0
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else float("inf")
    last_done = start

    async def client() -> None:
        nonlocal next_body, last_done
        # One connection per client, kept alive, as an SDK's single HTTP session does.
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
            while True:
                sent = time.perf_counter()
                if sent >= deadline or next_body >= limit:
                    return
                index = next_body
                next_body += 1  # single-threaded event loop: no lock needed
                try:
                    async with session.post(url, data=bodies[index].data) as response:
                        answer = await response.read()
                        status = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    status, answer = None, repr(exc).encode()
                done = time.perf_counter()
                if status != 200:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"{status}: {answer[:200].decode(errors='replace')}")
                    continue
                acknowledged.append(index)
                if answer != OK:
                    result.rejections += 1
                result.requests += 1
                result.events += len(bodies[index].message_ids)
                result.latencies_ms.append((done - sent) * 1000)
                last_done = max(last_done, done)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed_s = last_done - start
    result.bodies_used = next_body
    result.exhausted = seconds is not None and next_body >= len(bodies) and time.perf_counter() < deadline
    result.acknowledged_ids = [mid for index in acknowledged for mid in bodies[index].message_ids]
    return result


def describe(result: LoadResult) -> str:
    text = (f"{result.events_per_s:,.0f} events/s, {result.requests_per_s:,.1f} requests/s, "
            f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, errors {result.errors}")
    if result.rejections:
        text += f", {result.rejections} answers with quarantined messages"
    if result.exhausted:
        text += " (ran out of pre-built bodies before the time was up)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--bodies", type=int, default=3000, help="bodies to pre-build (each is 100 messages)")
    args = parser.parse_args()
    if args.seconds is None and args.requests is None:
        args.seconds = 10.0
    built = time.perf_counter()
    bodies = make_bodies(args.requests or args.bodies, write_key=args.write_key)
    print(f"built {len(bodies)} bodies of {BATCH_SIZE} messages "
          f"({sum(len(b.data) for b in bodies) / len(bodies) / BATCH_SIZE:.0f} bytes/message) "
          f"in {time.perf_counter() - built:.1f} s")
    result = uvloop.run(run_load(args.url, bodies, write_key=args.write_key, concurrency=args.concurrency,
                                  seconds=args.seconds, requests=args.requests))
    print(describe(result))
    for sample in result.error_samples:
        print("  error:", sample)


if __name__ == "__main__":
    main()
