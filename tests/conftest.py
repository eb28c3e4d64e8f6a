"""Shared fixtures: real stores (a SQLite file and the PostgreSQL server) and live ``cdp serve`` processes."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from cdp.config import Settings
from cdp.demo.server import LocalServer
from cdp.demo.server import start_server as start_local_server
from cdp.setup import prepare_store
from cdp.store.cache import StoreCache
from cdp.store.tables import metadata

POSTGRES_URL = os.environ.get("CDP_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# CI sets this so that an unreachable PostgreSQL fails the run instead of skipping half of it.
REQUIRE_POSTGRES = os.environ.get("CDP_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]


def _postgres_available() -> bool:
    try:
        with create_engine(POSTGRES_URL).connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@pytest.fixture(autouse=True)
def _no_cached_store_reads() -> None:
    # PostgreSQL tests reuse database URLs: one test's cached plans, definitions or suppressions
    # (cdp.store.cache) must not answer for the next test's store.
    StoreCache.forget_all()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[callable]:
    """A factory of fresh PostgreSQL databases, all dropped at the end of the session."""
    if not _postgres_available():
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def new_database() -> str:
        name = f"cdp_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    yield new_database
    with admin.connect() as conn:
        for name in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_store_url(postgres_databases) -> str:  # type: ignore[no-untyped-def]
    return postgres_databases()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings on a fresh store: a new SQLite file, or the session's PostgreSQL database, emptied after."""
    if backend == "sqlite":
        yield Settings(home=tmp_path / "home", database_url=None)
        return
    url = request.getfixturevalue("postgres_store_url")
    yield Settings(home=tmp_path / "home", database_url=url)
    engine = create_engine(url)
    present = set(inspect(engine).get_table_names())
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables if t.name in present)
    if names:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = prepare_store(settings)
    yield engine
    engine.dispose()


@dataclass
class LiveServer:
    """A ``cdp serve`` process on loopback, its credentials, and the store it writes to."""

    url: str
    write_key: str
    admin_token: str
    settings: Settings
    local: LocalServer

    def engine(self) -> Engine:
        return prepare_store(self.settings, pool=False)

    def kill(self) -> None:
        self.local.kill()

    def wait_attributed(self) -> None:
        """Profiles follow ingestion asynchronously (cdp.events.attribution): wait for them."""
        self.local.wait_attributed(timeout_s=60)


def wait_until(check: Callable[[], object], *, timeout_s: float, every_s: float = 0.02) -> None:
    """Poll ``check`` until it is true or ``timeout_s`` passed; the caller then asserts what it waited for."""
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(every_s)


def start_server(settings: Settings, *, workers: int = 1, log: Path, env: dict[str, str] | None = None) -> LiveServer:
    write_key, admin_token = f"wk-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    local = start_local_server(settings, workers=workers, log=log, write_keys=write_key, admin_token=admin_token,
                               env=env)
    return LiveServer(local.url, write_key, admin_token, settings, local)


@pytest.fixture(scope="module", params=BACKENDS)
def live_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server per module and backend (two workers, as in production)."""
    home = tmp_path_factory.mktemp("serve")
    url = request.getfixturevalue("postgres_databases")() if request.param == "postgresql" else None
    server = start_server(Settings(home=home / "home", database_url=url), workers=2, log=home / "serve.log")
    yield server
    server.kill()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server and database for every flow test of the session."""
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings(updates={PREFECT_SERVER_ANALYTICS_ENABLED: False}), prefect_test_harness():
        yield
