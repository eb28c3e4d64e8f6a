"""Send a file of Segment messages to a Tracking API, the way an SDK does: batches over keep-alive."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import orjson

from cdp.errors import CdpError


@dataclass(frozen=True)
class SendResult:
    messages: int
    requests: int
    quarantined: int
    seconds: float


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield orjson.loads(line)


def send_messages(
    url: str,
    write_key: str,
    messages: Iterable[dict[str, Any]],
    *,
    batch_size: int = 100,
    concurrency: int = 4,
    progress: Callable[[int], None] = lambda _n: None,
) -> SendResult:
    """POST ``/v1/batch`` requests from ``concurrency`` keep-alive clients; fail on any non-200."""
    started = time.perf_counter()
    totals = {"messages": 0, "requests": 0, "quarantined": 0}
    clients = [httpx.Client(base_url=url, auth=(write_key, ""), timeout=60) for _ in range(concurrency)]

    def post(index: int, batch: list[dict[str, Any]]) -> tuple[int, int]:
        body = orjson.dumps({"batch": batch, "sentAt": _now_iso()})
        answer = clients[index % concurrency].post(
            "/v1/batch", content=body, headers={"content-type": "application/json"}
        )
        if answer.status_code != 200:
            raise CdpError(f"the server answered {answer.status_code}: {answer.text[:200]}")
        return len(batch), answer.json().get("quarantined", 0)

    def settle(future: Future[tuple[int, int]]) -> None:
        count, rejected = future.result()
        totals["messages"] += count
        totals["requests"] += 1
        totals["quarantined"] += rejected
        progress(count)

    iterator = iter(messages)
    batches = enumerate(iter(lambda: list(islice(iterator, batch_size)), []))
    in_flight: deque[Future[tuple[int, int]]] = deque()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            # A bounded window of requests in flight keeps memory flat whatever the file size.
            for index, batch in batches:
                in_flight.append(pool.submit(post, index, batch))
                while len(in_flight) >= 2 * concurrency or (in_flight and in_flight[0].done()):
                    settle(in_flight.popleft())
            while in_flight:
                settle(in_flight.popleft())
    finally:
        for client in clients:
            client.close()
    return SendResult(totals["messages"], totals["requests"], totals["quarantined"], time.perf_counter() - started)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
