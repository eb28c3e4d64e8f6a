"""Realized outcomes on the simulated shop: a backtest scored one window before the data ends, then judged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow import MlflowClient

from cdp.errors import InvalidInput, NotFound
from cdp.predictions.schemas import PredictionDefinition
from cdp.predictions.service import create_prediction
from models.outcomes import realized_outcomes
from models.predict import score_prediction
from models.tracking import RUN_KIND, registered_name
from models.train import train_prediction
from tests.conftest import start_server
from tests.models_data import Shop, simulated_shop
from tests.test_cli import assert_user_error, cdp

pytestmark = pytest.mark.slow
KEY = "outcome_churn"


@pytest.fixture(scope="module")
def scored() -> tuple[Shop, PredictionDefinition]:
    """A churn prediction trained and scored as of one window before the data ends: its window has passed."""
    shop = simulated_shop()
    definition = PredictionDefinition(key=KEY, kind="churn", training_cutoffs=2)
    with shop.engine.begin() as conn:
        create_prediction(conn, definition=definition, now=shop.end)
    past = shop.end - definition.horizon
    train_prediction(shop.engine, definition, as_of=past, settings=shop.settings)
    score_prediction(shop.engine, KEY, as_of=past, settings=shop.settings)
    return shop, definition


def test_realized_churn_falls_from_the_top_band_to_the_bottom(scored: tuple[Shop, PredictionDefinition]) -> None:
    shop, definition = scored
    outcomes = realized_outcomes(shop.engine, definition, now=shop.end)
    assert outcomes.as_of == shop.end - definition.horizon and outcomes.window_end == shop.end
    bands = outcomes.bands
    assert list(bands.index) == list(range(1, 11)) and bands["n"].sum() > 500
    # Decile 1 holds the likeliest churners: what happened falls band after band, as predicted.
    quintiles = bands.groupby((bands.index - 1) // 2)[["realized_total", "n"]].sum()
    rates = (quintiles["realized_total"] / quintiles["n"]).to_numpy()
    assert (np.diff(rates) < 0).all(), bands
    assert bands.at[1, "realized"] > bands.at[10, "realized"] + 0.4, bands
    assert (bands["predicted"].diff().dropna() <= 0).all()
    assert abs(outcomes.predicted - outcomes.realized) < 0.08, str(outcomes)  # calibrated one window ahead
    with pytest.raises(InvalidInput, match="not known yet"):
        realized_outcomes(shop.engine, definition, now=shop.end - timedelta(days=1), as_of=outcomes.as_of)
    with pytest.raises(NotFound, match="no scoring whose 30-day window has passed"):
        realized_outcomes(shop.engine, definition, now=shop.end - timedelta(days=1))
    with pytest.raises(NotFound, match="was not scored as of"):
        realized_outcomes(shop.engine, definition, now=shop.end, as_of=shop.end - timedelta(days=3))


def test_outcomes_through_the_cli_the_model_card_and_the_api(scored: tuple[Shop, PredictionDefinition],
                                                             tmp_path: Path) -> None:
    shop, definition = scored
    past = shop.end - definition.horizon
    judged = cdp(shop.settings, "predictions", "outcomes", KEY)
    assert judged.returncode == 0, judged.stderr
    assert f"scored as of {past:%Y-%m-%d}" in judged.stdout and "realized_total" in judged.stdout
    assert_user_error(cdp(shop.settings, "predictions", "outcomes", KEY, "--as-of", "2026-01-01"), "was not scored")
    client = MlflowClient(shop.settings.resolved_mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(registered_name(KEY))
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_KIND}` = 'outcomes'")
    assert run.data.tags["as_of"] == past.isoformat() and "decile_01.realized" in run.data.metrics
    shown = cdp(shop.settings, "predictions", "show", KEY)
    assert f"realized outcomes of the scoring as of {past.isoformat()}" in shown.stdout, shown.stdout

    server = start_server(shop.settings, log=tmp_path / "serve.log")
    try:
        url, admin = f"{server.url}/v1/predictions/{KEY}/outcomes", {"authorization": f"Bearer {server.admin_token}"}
        answer = httpx.get(url, headers=admin, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()["data"]
        assert body["as_of"] == past.isoformat() and [b["decile"] for b in body["bands"]] == list(range(1, 11))
        assert body["bands"][0]["realized"] > body["bands"][-1]["realized"]
        naive = httpx.get(url, headers=admin, params={"as_of": "2026-07-30T00:00:00"})
        assert naive.status_code == 400 and naive.json()["error"]["code"] == "invalid_request", naive.text
        assert httpx.get(url, headers=admin, params={"as_of": "2026-01-01T00:00:00Z"}).status_code == 404
    finally:
        server.kill()
