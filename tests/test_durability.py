"""kill -9 of the server in the middle of ingestion loses no acknowledged event."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from cdp.config import Settings
from cdp.store.tables import events
from tests.conftest import start_server


@pytest.mark.slow
def test_kill_9_mid_ingestion_keeps_every_acknowledged_event(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(settings, workers=2, log=tmp_path / "serve.log")
    acknowledged: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=server.url, auth=(server.write_key, ""), timeout=10) as client:
            while not stop.is_set():
                ids = [str(uuid.uuid4()) for _ in range(100)]
                batch = [{"type": "track", "userId": f"u{i % 50}", "event": "E", "messageId": m,
                          "properties": {"n": i}} for i, m in enumerate(ids)]
                try:
                    answer = client.post("/v1/batch", json={"batch": batch})
                except httpx.TransportError:
                    return  # the server died under us: this batch was never acknowledged
                if answer.status_code == 200:
                    with lock:
                        acknowledged.extend(ids)

    senders = [threading.Thread(target=send) for _ in range(4)]
    for thread in senders:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 3000 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL to the whole process group, mid-flight
    stop.set()
    for thread in senders:
        thread.join(15)
    assert len(acknowledged) >= 3000, "the server acknowledged too little before the kill to prove anything"

    engine = server.engine()  # opening the store recovers it (SQLite replays its WAL)
    with engine.connect() as conn:
        found = 0
        for start in range(0, len(acknowledged), 500):
            chunk = acknowledged[start : start + 500]
            found += conn.execute(
                select(func.count()).select_from(events).where(events.c.message_id.in_(chunk))
            ).scalar()
        total = conn.execute(select(func.count()).select_from(events)).scalar()
    engine.dispose()
    assert found == len(acknowledged), f"{len(acknowledged) - found} acknowledged events lost"
    assert total >= found  # batches in flight at the kill may have committed without an answer

    restarted = start_server(settings, workers=1, log=tmp_path / "serve2.log")
    try:
        answer = httpx.post(f"{restarted.url}/v1/track", auth=(restarted.write_key, ""),
                            json={"userId": "u", "event": "After restart"})
        assert answer.status_code == 200
    finally:
        restarted.kill()
