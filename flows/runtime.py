"""How flows run: Prefect configured for this store, the task runner, retries on transient store errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings
from prefect.states import State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from sqlalchemy.exc import DisconnectionError, OperationalError

from cdp.config import Settings
from cdp.errors import CdpError

# What a retry can cure: a dropped or refused connection, a busy SQLite file, a serialization
# failure (psycopg's raw COPY path raises psycopg's own errors, not SQLAlchemy's).
TRANSIENT = (OperationalError, DisconnectionError, psycopg.OperationalError)
RETRY_DELAYS = [2, 10, 30]  # seconds: a restarting database is usually back within half a minute
# Prefect allows its temporary server 20 s to start; on two busy cores it can need more.
SERVER_START_SECONDS = 120
F = TypeVar("F", bound=Callable[..., Any])


def transient_store_error(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's retry condition: retry a task only when the store failed transiently."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:
        return False
    return False


def store_task(function: F) -> F:
    """A Prefect task that reads or writes the store, retried on transient errors.

    No cache: inputs are settings and frames (hashing a million-row frame costs more than the
    task), and a scheduled run must read the store again.
    """
    return task(  # type: ignore[return-value]
        retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=transient_store_error,
        cache_policy=NO_CACHE,
    )(function)


def task_runner(settings: Settings) -> TaskRunner[Any]:
    """Threads in the flow's process, or Dask (an existing cluster, else a local one) for ``dask``."""
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    # One thread per worker process: a partition's queries and pandas work hold the GIL.
    return DaskTaskRunner(cluster_kwargs={"n_workers": settings.dask_workers, "threads_per_worker": 1})


@contextmanager
def prefect_settings(settings: Settings) -> Iterator[None]:
    """Prefect's files (its local database) under CDP_HOME, and no analytics sent anywhere."""
    with temporary_settings(updates={PREFECT_HOME: settings.home / "prefect", PREFECT_SERVER_ANALYTICS_ENABLED: False}):
        yield


@contextmanager
def local_api() -> Iterator[None]:
    """A Prefect API for the runs: the configured server, else Prefect's temporary local one.

    Started here rather than left to Prefect, so that its address travels with each task's
    context: Dask worker processes report to it instead of each starting a server of its own on
    the same database (slow, and they time out on two cores).
    """
    if PREFECT_API_URL.value():
        yield
        return
    # Imported here: Prefect's server code takes seconds to import, which `cdp flows list` and a
    # refused `cdp flows run` don't need.
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    try:
        server.start(timeout=SERVER_START_SECONDS)
    except RuntimeError:
        server.stop()
        raise CdpError(f"Prefect's temporary local server did not start within {SERVER_START_SECONDS} s; start one "
                       "(`prefect server start`) and set PREFECT_API_URL=http://127.0.0.1:4200/api") from None
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
            APILogHandler().flush()  # the run's last log lines, while the server still listens
    finally:
        server.stop()
