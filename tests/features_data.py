"""Test data for the features tests: messages through the real ingestion, and seeded random shops."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.store.tables import events

CONFIG = IngestConfig.from_settings(Settings())
CATEGORIES = ("Electronics", "Home & Kitchen", "Books", "Home-Kitchen", None)


def store(engine: Engine, messages: Iterable[tuple[dict[str, Any], datetime]]) -> None:
    """Ingest ``(message, received_at)`` pairs as the Tracking API would: one batch per arrival time.

    The identity graph attributes each event to a profile (``events.profile_id``).
    """
    batches: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for message, received_at in messages:
        batches[received_at].append(message)
    with engine.begin() as conn:
        source_id = create_source(conn, name=f"test-{uuid.uuid4().hex[:8]}", now=min(batches))[0].id
    for received_at in sorted(batches):
        with engine.begin() as conn:
            result = ingest(conn, source_id=source_id, messages=batches[received_at],
                            envelope=Envelope(received_at=received_at), config=CONFIG, live=False)
            assert result.quarantined == 0, result.rejections


def profile_of(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(events.c.profile_id).where(events.c.user_id == user_id).limit(1)).scalar_one()


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def track(user: str, event: str, at: datetime, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "timestamp": iso(at), "properties": properties}


def random_shop(seed: int, *, users: int, start: datetime, days: int) -> list[tuple[dict[str, Any], datetime]]:
    """A seeded random event stream with everything the features read, and its noise.

    Users have a few to ~80 events over ``days`` days: pages, screens, identifies (traits),
    product views and adds, orders whose value is a revenue number, a revenue string (not a
    number), or only products (price and quantity sometimes missing; categories including
    colliding and missing ones); bursts of events minutes apart make sessions; 5 % of messages
    arrive days late; a few are anonymous only.
    """
    rng = np.random.default_rng(seed)
    total_us = days * 86_400_000_000
    # Arrivals: the SDK flushes at these instants; an event arrives at the first one after it.
    flushes = np.sort(rng.integers(0, total_us + 30 * 86_400_000_000, 400))
    out: list[tuple[dict[str, Any], datetime]] = []
    for u in range(users):
        user = f"user-{seed}-{u}"
        joined = int(rng.integers(0, total_us))
        count = int(rng.integers(1, 80))
        times: list[int] = []
        while len(times) < count:
            session_start = int(rng.integers(joined, total_us))
            for _ in range(int(rng.integers(1, 6))):
                times.append(session_start)
                session_start += int(rng.exponential(12 * 60_000_000))  # minutes apart, sometimes > 30
        for at_us in sorted(times[:count]):
            at = start + timedelta(microseconds=at_us)
            message = _random_message(rng, user, at)
            if rng.random() < 0.05:
                message.pop("userId")
                message["anonymousId"] = f"anon-{seed}-{u}-{int(rng.integers(0, 3))}"
            late = rng.random() < 0.05
            arrival_us = at_us + (int(rng.integers(1, 20)) * 86_400_000_000 if late else 0)
            index = min(int(np.searchsorted(flushes, arrival_us)), len(flushes) - 1)
            arrival = start + timedelta(microseconds=int(max(flushes[index], arrival_us)))
            out.append((message, arrival))
    return out


def _random_message(rng: np.random.Generator, user: str, at: datetime) -> dict[str, Any]:
    draw = rng.random()
    if draw < 0.25:
        return {"type": "page", "userId": user, "name": "Home", "timestamp": iso(at), "properties": {"path": "/"}}
    if draw < 0.35:
        return {"type": "screen", "userId": user, "name": "Cart", "timestamp": iso(at)}
    if draw < 0.42:
        traits = {"plan": str(rng.choice(["free", "plus", "pro"])), "age": int(rng.integers(18, 80))}
        return {"type": "identify", "userId": user, "timestamp": iso(at), "traits": traits}
    if draw < 0.75:
        name = "Product Viewed" if rng.random() < 0.7 else "Product Added"
        return track(user, name, at, product_id=f"p{int(rng.integers(0, 50))}", price=float(rng.integers(1, 100)))
    if draw < 0.8:
        return track(user, "Signed Up", at, plan=str(rng.choice(["free", "pro"])), trial=bool(rng.random() < 0.5))
    products = []
    for _ in range(int(rng.integers(0, 4))):
        line: dict[str, Any] = {"product_id": f"p{int(rng.integers(0, 50))}"}
        category = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]
        if category is not None:
            line["category"] = category
        if rng.random() < 0.9:
            line["price"] = round(float(rng.uniform(1, 120)), 2)
        if rng.random() < 0.7:
            line["quantity"] = int(rng.integers(1, 4))
        products.append(line)
    properties: dict[str, Any] = {"order_id": f"o{int(rng.integers(0, 10**9))}", "products": products}
    value = rng.random()
    if value < 0.7:
        properties["revenue"] = round(float(rng.uniform(5, 300)), 2)
    elif value < 0.8:
        properties["revenue"] = "12.50"  # a string is not a number: the products count instead
    return track(user, "Order Completed", at, **properties)


START = datetime(2025, 1, 1, tzinfo=UTC)
