"""Background jobs (cdp.jobs) on both stores: progress seen from another process, failures in plain words,
jobs of a killed process marked interrupted; and ``Prefer: respond-async`` with ``GET /v1/jobs/{id}`` on a
live two-worker server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, update

from cdp.auth.service import create_token
from cdp.config import Settings
from cdp.errors import InvalidInput, NotFound
from cdp.jobs import Job, JobRunner, get_job
from cdp.store.tables import jobs
from tests.conftest import LiveServer

FAST = {"heartbeat": timedelta(seconds=0.2), "stale_after": timedelta(seconds=1)}

# A server process in miniature: a runner whose one job reports a third of its work, then hangs.
HANGING_JOB = textwrap.dedent("""
    import time
    from datetime import timedelta
    from cdp.config import Settings
    from cdp.jobs import JobRunner
    from cdp.setup import prepare_store

    runner = JobRunner(prepare_store(Settings()), heartbeat=timedelta(seconds=0.2),
                       stale_after=timedelta(seconds=1)).start()

    def work(progress):
        progress(1, 3, "reading the first third")
        time.sleep(600)

    print(runner.submit(kind="hang", scope="admin", created_by="test", work=work).id, flush=True)
    time.sleep(600)
""")


def wait_for(engine: Engine, job_id: int, until: Callable[[Job], bool], timeout_s: float = 30) -> Job:
    deadline = time.monotonic() + timeout_s
    job = get_job(engine, job_id)
    while not until(job) and time.monotonic() < deadline:
        time.sleep(0.05)
        job = get_job(engine, job_id)
    return job


def test_progress_is_seen_from_another_process_and_a_killed_process_leaves_its_job_interrupted(
        settings: Settings, engine: Engine) -> None:
    env = {**os.environ, "CDP_HOME": str(settings.home), "CDP_DATABASE_URL": settings.resolved_database_url,
           "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen([sys.executable, "-c", HANGING_JOB], env=env, stdout=subprocess.PIPE, text=True)
    try:
        job_id = int(process.stdout.readline())  # type: ignore[union-attr]
        job = wait_for(engine, job_id, lambda j: j.done == 1)
        assert (job.state, job.done, job.total, job.message, job.kind) == ("running", 1, 3, "reading the first third",
                                                                           "hang")
        # Another runner starting meanwhile (a second worker, a restart of another) leaves a live job alone.
        other = JobRunner(engine, **FAST).start()
        time.sleep(1.5)
        assert get_job(engine, job_id).state == "running"
        other.stop()
    finally:
        process.kill()
        process.wait()
    time.sleep(1.2)  # its heartbeat is now stale
    restarted = JobRunner(engine, **FAST).start()
    job = get_job(engine, job_id)
    restarted.stop()
    assert job.state == "interrupted" and job.finished_at is not None
    assert job.error == "the server process running it stopped before it finished: start it again"


def test_results_and_failures_in_plain_words(engine: Engine) -> None:
    runner = JobRunner(engine, **FAST).start()
    release = threading.Event()

    def counted(progress):  # type: ignore[no-untyped-def]
        progress(0, 2, "first half")
        release.wait(10)
        progress(1, 2, "second half")
        return {"profiles": 7, "at": datetime(2026, 3, 1, tzinfo=UTC)}

    def refused(progress):  # type: ignore[no-untyped-def]
        raise InvalidInput("the audience 'vip' does not exist")

    def broken(progress):  # type: ignore[no-untyped-def]
        return 1 / 0

    done = runner.submit(kind="count", scope="profiles:read", created_by="ann@shop.example", work=counted)
    assert done.state == "queued" and done.message == "waiting to start" and done.total is None
    job = wait_for(engine, done.id, lambda j: j.message == "first half")
    assert (job.state, job.done, job.total) == ("running", 0, 2)
    release.set()
    job = wait_for(engine, done.id, lambda j: j.state == "done")
    assert job.result == {"profiles": 7, "at": "2026-03-01T00:00:00+00:00"} and (job.done, job.total) == (2, 2)
    assert job.as_json()["created_by"] == "ann@shop.example" and "scope" not in job.as_json()

    failed = wait_for(engine, runner.submit(kind="x", scope="admin", created_by="t", work=refused).id,
                      lambda j: j.state == "failed")
    assert failed.error == "the audience 'vip' does not exist" and failed.result is None
    crashed = wait_for(engine, runner.submit(kind="x", scope="admin", created_by="t", work=broken).id,
                       lambda j: j.state == "failed")
    assert crashed.error == "it failed unexpectedly (ZeroDivisionError); the server log has the details"
    runner.stop()
    # A week after it finished, a job is forgotten (when a runner starts).
    with engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == failed.id).values(finished_at=datetime.now(UTC) - timedelta(days=8)))
    JobRunner(engine, **FAST).start().stop()
    with pytest.raises(NotFound):
        get_job(engine, failed.id)
    assert get_job(engine, done.id).state == "done"


def poll(server: LiveServer, location: str, headers: dict[str, str]) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.url}{location}", headers=headers).json()["data"]
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{location} did not finish: {job}")


def test_long_actions_answer_a_job_to_follow(live_server: LiveServer) -> None:
    admin = {"Authorization": f"Bearer {live_server.admin_token}"}
    engine = live_server.engine()
    with engine.begin() as conn:
        _, audiences_only = create_token(conn, name=f"segments-{uuid.uuid4().hex[:6]}", scopes=["audiences:write"],
                                         now=datetime.now(UTC))
    engine.dispose()
    segments = {"Authorization": f"Bearer {audiences_only}"}
    definition = {"key": "churn_30d", "kind": "churn", "window_days": 30}

    now = httpx.post(f"{live_server.url}/v1/predictions/readiness", json=definition, headers=admin)
    started = httpx.post(f"{live_server.url}/v1/predictions/readiness", json=definition,
                         headers={**admin, "Prefer": "respond-async"})
    assert now.status_code == 200 and started.status_code == 202, started.text
    job = started.json()["data"]
    assert started.headers["location"] == f"/v1/jobs/{job['id']}" and job["state"] == "queued"
    assert job["kind"] == "prediction_readiness" and job["created_by"].startswith("token ")
    finished = poll(live_server, started.headers["location"], admin)  # either worker answers
    assert finished["state"] == "done" and finished["result"] == now.json()["data"]
    assert finished["done"] == finished["total"] == 2
    # Following a job takes the scope of what it runs.
    refused = httpx.get(f"{live_server.url}{started.headers['location']}", headers=segments)
    assert refused.status_code == 403 and "predictions:read" in refused.json()["error"]["message"]
    assert httpx.get(f"{live_server.url}{started.headers['location']}").status_code == 401
    assert httpx.get(f"{live_server.url}/v1/jobs/999999", headers=admin).status_code == 404
    bad = httpx.post(f"{live_server.url}/v1/predictions/readiness", json={"kind": "churn"},
                     headers={**admin, "Prefer": "respond-async"})
    assert bad.status_code == 400  # a definition is checked before any job starts

    audience = {"key": "everyone_pro", "condition": {"type": "trait", "trait": "plan", "op": "eq", "value": "pro"}}
    saving = httpx.post(f"{live_server.url}/v1/audiences", json=audience, headers={**segments, "Prefer": "respond-async"})
    assert saving.status_code == 202, saving.text
    saved = poll(live_server, saving.headers["location"], segments)
    assert saved["state"] == "done" and saved["result"]["key"] == "everyone_pro"
    assert saved["result"]["status"] == "created" and saved["result"]["size"] == 0
    assert httpx.get(f"{live_server.url}/v1/audiences/everyone_pro", headers=admin).json()["data"]["version"] == 1

    replaying = httpx.post(f"{live_server.url}/v1/quarantine/replay", headers={**admin, "Prefer": "respond-async"})
    assert replaying.status_code == 202
    assert poll(live_server, replaying.headers["location"], admin)["result"] == {"replayed": 0, "still_invalid": 0}
    assert httpx.get(f"{live_server.url}{replaying.headers['location']}", headers=segments).status_code == 403
