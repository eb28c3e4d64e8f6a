"""The Prefect flows under one temporary Prefect server: each flow's smoke test, retries, Dask, and the CLI."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
import pytest
from prefect import flow
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

import flows
from cdp import cli
from cdp.config import Settings, get_settings
from cdp.audiences.schemas import parse_audience
from cdp.audiences.service import save_audience
from cdp.predictions.schemas import PredictionDefinition
from cdp.predictions.service import create_prediction
from cdp.store.tables import events, profile_traits
from features.definitions import resolve
from features.read import read_features
from flows.build_features import FeatureSnapshot, build_features
from flows.daily import daily
from flows.audiences import refresh_audiences
from flows.runtime import store_task, task_runner
from flows.score import score_and_write_back
from flows.train import train
from tests.features_data import START, random_shop, store
from tests.test_cli import assert_user_error, cdp
from tests.test_features import assert_same

AS_OF = START + timedelta(days=200)
pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def configured(settings: Settings, engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    """A store with a random shop, and the environment a served flow reads its settings from."""
    store(engine, random_shop(6, users=60, start=START, days=200))
    monkeypatch.setenv("CDP_HOME", str(settings.home))
    if settings.database_url:
        monkeypatch.setenv("CDP_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("CDP_DATABASE_URL", raising=False)
    monkeypatch.setenv("CDP_BACKFILLED_UNTIL", (AS_OF + timedelta(days=60)).isoformat())
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def expected(engine, settings: Settings) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return read_features(engine, as_of=AS_OF, features=resolve("default"), backfilled_until=settings.backfilled_until)


def test_build_features_writes_the_snapshot_of_every_partition(configured: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    built = build_features(as_of=AS_OF, partitions=3)
    assert built.path == configured.home / "features" / f"{AS_OF:%Y-%m-%dT%H%M%SZ}.parquet"
    snapshot = pd.read_parquet(built.path)
    assert_same(snapshot, expected(engine, configured))
    assert built.profiles == len(snapshot) > 50 and built.columns == snapshot.shape[1]
    assert built.readiness.startswith("data readiness:") and "history" in built.readiness


def test_daily_runs_every_step(configured: Settings) -> None:
    result = daily(as_of=AS_OF)
    assert list(result) == list(flows.STEPS) and isinstance(result["build_features"], FeatureSnapshot)


@pytest.mark.slow
def test_train_then_score_and_write_back(configured: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        create_prediction(conn, definition=PredictionDefinition(key="churn", kind="churn", fallback="heuristic"),
                          now=AS_OF)
    trained = train(as_of=AS_OF)
    assert list(trained) == ["churn", "recommender"]
    # 60 customers are too few to train on: the run says so, and the heuristic scores them instead.
    assert "NOT READY" in trained["churn"] and "FALLBACK" in trained["churn"], trained["churn"]
    month_ago = score_and_write_back(as_of=AS_OF - timedelta(days=30))
    assert "realized outcomes" not in month_ago["churn"]  # its window has not passed yet
    scored = score_and_write_back(as_of=AS_OF)
    assert "scored as of" in scored["churn"] and "FALLBACK" in scored["churn"], scored
    # The scoring of a month ago is judged against what happened since: its outcomes go to MLflow.
    assert f"realized outcomes of the scoring as of {AS_OF - timedelta(days=30):%Y-%m-%d}" in scored["churn"], scored
    with engine.connect() as conn:
        probabilities = conn.execute(select(func.count()).select_from(profile_traits).where(
            profile_traits.c.name == "churn_probability", profile_traits.c["class"] == "predicted")).scalar()
    assert probabilities > 10


def test_refresh_audiences_moves_members(configured: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        save_audience(conn, definition=parse_audience(
            {"key": "buyers", "condition": {"type": "event", "event": "Order Completed", "at_least": 1}}), now=AS_OF)
    refreshed = refresh_audiences(as_of=AS_OF)
    entered = int(refreshed["buyers"].split(" entered")[0].replace(",", ""))
    with engine.connect() as conn:
        buyers = conn.execute(select(func.count(func.distinct(events.c.profile_id))).where(
            events.c.event == "Order Completed", events.c.timestamp <= AS_OF, events.c.received_at <= AS_OF)).scalar()
    assert entered == buyers > 0
    assert refresh_audiences(as_of=AS_OF)["buyers"] == "0 entered, 0 exited"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_on_a_two_worker_dask_cluster_the_result_is_the_same(configured: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    runner = task_runner(Settings(task_runner="dask", dask_workers=2))
    built = build_features.with_options(task_runner=runner)(as_of=AS_OF, partitions=4)
    assert_same(pd.read_parquet(built.path), expected(engine, configured))


def test_the_task_runner_follows_the_settings() -> None:
    assert isinstance(task_runner(Settings()), ThreadPoolTaskRunner)
    remote = task_runner(Settings(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    assert task_runner(Settings(task_runner="dask", dask_workers=3)).cluster_kwargs["n_workers"] == 3


def test_store_tasks_retry_transient_errors_only() -> None:
    calls: list[str] = []

    @store_task
    def flaky(error: Exception) -> str:
        calls.append(type(error).__name__)
        if len(calls) == 1:
            raise error
        return "ok"

    @flow
    def run_once(error: Exception) -> str:
        return flaky.with_options(retry_delay_seconds=0)(error)

    assert run_once(OperationalError("SELECT 1", {}, Exception("server closed the connection"))) == "ok"
    assert calls == ["OperationalError", "OperationalError"]
    calls.clear()
    with pytest.raises(ValueError):
        run_once(ValueError("a bug is not retried"))
    assert calls == ["ValueError"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli_runs_a_flow_and_refuses_mistakes_in_one_line(configured: Settings) -> None:
    done = cdp(configured, "flows", "run", "build_features", "--as-of", AS_OF.isoformat(), "--param", "partitions=2")
    assert done.returncode == 0, done.stderr
    assert "build_features:" in done.stdout and "data readiness" in done.stdout
    assert (configured.home / "features" / f"{AS_OF:%Y-%m-%dT%H%M%SZ}.parquet").is_file()
    assert (configured.home / "prefect").is_dir()  # Prefect's files live under CDP_HOME
    assert "build_features" in cdp_here("flows", "list").stdout
    assert_user_error(cdp_here("flows", "run", "nope"), "no flow named 'nope'")
    assert_user_error(cdp_here("flows", "run", "daily", "--as-of", "2026-13-01"), "--as-of")
    assert_user_error(cdp_here("flows", "run", "build_features", "--param", "partitions=many"), "partitions")
    assert_user_error(cdp_here("flows", "run", "daily", "--param", "colour=red"), "no parameter colour")
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # no server configured, as on a fresh machine
        assert_user_error(cdp_here("flows", "serve"), "PREFECT_API_URL")


def cdp_here(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process, for what fails before any work: a new process spends ~11 s importing the flows."""
    result = CliRunner().invoke(cli.app, list(args), prog_name="cdp")
    return subprocess.CompletedProcess(["cdp", *args], result.exit_code, result.stdout, result.stderr)
