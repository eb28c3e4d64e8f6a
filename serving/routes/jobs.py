"""Background jobs over HTTP: a long action asked with ``Prefer: respond-async`` answers 202 and a job to poll.

``GET /v1/jobs/{id}`` reads a job's state and progress from the store, so whichever server process
answers knows it; a caller may read a job when it may do what the job does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from cdp.jobs import Work, get_job, no_progress
from serving.body import StrictJSONRoute
from serving.deps import Caller, EngineDep, authorize, caller_name, check_scope
from serving.responses import JSONBody

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}")
async def read(request: Request, engine: EngineDep, job_id: int) -> JSONBody:
    """A job: ``state`` (queued, running, done, failed, interrupted), progress ``done`` of ``total`` (null
    while unknown) with a ``message`` in plain words, then its ``result`` or its ``error``."""
    caller = await authorize(request, None)  # who asks, before saying whether the job exists
    job = await run_in_threadpool(get_job, engine, job_id)
    check_scope(caller, job.scope)
    return JSONBody({"data": job.as_json()})


def run_or_start(request: Request, caller: Caller, *, kind: str, scope: str, work: Work,
                 status: Callable[[Any], int] = lambda _result: 200) -> JSONBody:
    """``work``'s result now (with the ``status`` it gives), or with ``Prefer: respond-async`` a job running
    it: 202, ``Location`` the job. ``scope`` is the one the route checked: who may start it may follow it.
    """
    if "respond-async" not in request.headers.get("prefer", "").lower():
        result = work(no_progress)
        return JSONBody({"data": result}, status_code=status(result))
    job = request.app.state.jobs.submit(kind=kind, scope=scope, created_by=caller_name(caller), work=work)
    return JSONBody({"data": job.as_json()}, status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})
