"""A prediction through the CLI on the simulated shop: create, train, score, show, export; rescoring; no champion."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sqlalchemy import func, select

from cdp.predictions.schemas import PredictionDefinition
from cdp.predictions.service import create_prediction
from cdp.store.tables import profile_traits, trait_changes
from models.predict import NoChampion, score_prediction, train_and_score_all
from models.tracking import RUN_KIND, registered_name
from tests.models_data import Shop, simulated_shop
from tests.test_cli import assert_user_error, cdp

pytestmark = pytest.mark.slow
NAMES = [f"churn_{n}" for n in ("probability", "percentile", "decile", "reasons", "model_version", "scored_at")]


@pytest.fixture(scope="module")
def shop() -> Shop:
    return simulated_shop()


def predicted(shop: Shop, name: str) -> dict[int, object]:
    with shop.engine.connect() as conn:
        return dict(conn.execute(select(profile_traits.c.profile_id, profile_traits.c.value).where(
            profile_traits.c.name == name, profile_traits.c["class"] == "predicted")).all())


def test_cli_creates_trains_scores_shows_and_exports(shop: Shop, tmp_path: Path) -> None:
    as_of = shop.end.isoformat()
    created = cdp(shop.settings, "predictions", "create", "churn", "--kind", "churn", "--window-days", "30")
    assert created.returncode == 0, created.stderr
    assert "prediction churn v1 (created)" in created.stdout
    assert_user_error(cdp(shop.settings, "predictions", "create", "goal", "--kind", "custom"), "one goal event")
    assert_user_error(cdp(shop.settings, "predictions", "create", "spend", "--kind", "ltv", "--gate-metric", "roc_auc"),
                      "gate metric 'roc_auc': ltv predictions are judged on one of normalized_gini")
    assert_user_error(cdp(shop.settings, "predictions", "score", "churn", "--as-of", as_of), "has no champion model")
    # Two training cutoffs keep the test short; the definition is stored as version 2.
    engine = shop.engine
    with engine.begin() as conn:
        create_prediction(conn, definition=PredictionDefinition(key="churn", kind="churn", training_cutoffs=2),
                          now=shop.end)

    trained = cdp(shop.settings, "predictions", "train", "churn", "--as-of", as_of)
    assert trained.returncode == 0, trained.stderr
    assert "roc_auc" in trained.stdout and "recency" in trained.stdout and "btyd" in trained.stdout
    assert "gate: promoted v1" in trained.stdout
    listed = cdp(shop.settings, "predictions", "list")
    assert "churn" in listed.stdout and "v1" in listed.stdout

    scored = cdp(shop.settings, "predictions", "score", "churn", "--as-of", as_of)
    assert scored.returncode == 0, scored.stderr
    assert "with model v1" in scored.stdout and "score PSI" in scored.stdout
    probabilities = predicted(shop, "churn_probability")
    assert 500 < len(probabilities) < 2000 and all(0 <= p <= 1 for p in probabilities.values())
    percentiles, deciles = predicted(shop, "churn_percentile"), predicted(shop, "churn_decile")
    top = max(probabilities, key=probabilities.get)  # type: ignore[arg-type]
    assert percentiles[top] == 1.0 and deciles[top] == 1
    assert sum(d == 1 for d in deciles.values()) == pytest.approx(len(deciles) / 10, rel=0.2)
    reasons = predicted(shop, "churn_reasons")
    assert all(1 <= len(r) <= 3 for r in reasons.values())  # type: ignore[arg-type]
    assert set(predicted(shop, "churn_model_version").values()) == {"1"}

    shown = cdp(shop.settings, "predictions", "show", "churn")
    assert shown.returncode == 0, shown.stderr
    assert "champion v1" in shown.stdout and "roc_auc" in shown.stdout and "plots/roc.png" in shown.stdout
    assert "last scoring as of" in shown.stdout

    out = tmp_path / "churn.csv"
    exported = cdp(shop.settings, "predictions", "export", "churn", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(probabilities) and list(rows[0]) == ["profile_id", *NAMES]
    assert float(rows[0]["churn_probability"]) == pytest.approx(probabilities[int(rows[0]["profile_id"])])

    # Rescoring a week later moves the current traits and keeps the earlier ones in the log.
    later = shop.end + timedelta(days=7)
    again = score_prediction(engine, "churn", as_of=later, settings=shop.settings)
    assert again.model_version == "1" and again.drift is not None and "recency_days" in again.drift.features
    now = predicted(shop, "churn_probability")
    scored_now = {p for p, v in now.items() if v is not None}
    assert len(scored_now) == again.profiles
    # Profiles no longer eligible lose their score (a null), not keep a stale one.
    assert set(predicted(shop, "churn_scored_at").values()) == {later.isoformat(), None}
    assert all(now[p] is None for p in set(probabilities) - scored_now)
    with engine.connect() as conn:
        logged = conn.execute(select(func.count()).where(trait_changes.c.name == "churn_probability")).scalar()
    assert logged == len(probabilities) + again.profiles + len(set(probabilities) - scored_now)
    client = MlflowClient(shop.settings.resolved_mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(registered_name("churn"))
    scorings = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_KIND}` = 'scoring'")
    assert len(scorings) == 2 and "psi.recency_days" in scorings[0].data.metrics


def test_without_a_champion_refuse_or_score_with_the_flagged_heuristic(shop: Shop) -> None:
    with shop.engine.begin() as conn:
        create_prediction(conn, definition=PredictionDefinition(key="buy_strict", kind="purchase"), now=shop.end)
        create_prediction(conn, definition=PredictionDefinition(key="buy_rough", kind="purchase", fallback="heuristic"),
                          now=shop.end)
    with pytest.raises(NoChampion, match="'buy_strict' has no champion model"):
        score_prediction(shop.engine, "buy_strict", as_of=shop.end, settings=shop.settings)
    result = score_prediction(shop.engine, "buy_rough", as_of=shop.end, settings=shop.settings)
    assert result.fallback and "FALLBACK" in str(result) and result.profiles > 500
    assert set(predicted(shop, "buy_rough_model_version").values()) == {result.model_version}
    assert result.model_version.startswith("fallback:")


def test_train_and_score_all_goes_on_past_a_failure(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stored definition is tried; one that can't be trained is reported, the others are not stopped."""
    import models.predict

    trained: list[str] = []

    def fake_train(engine, definition, *, as_of, settings):  # type: ignore[no-untyped-def]
        trained.append(definition.key)
        if definition.key == "buy_strict":
            from features import NotReady
            raise NotReady("not enough data to train: too few examples")
        return None

    monkeypatch.setattr(models.predict, "train_prediction", fake_train)
    runs = {run.definition.key: run for run in train_and_score_all(shop.engine, shop.settings, shop.end)}
    assert set(runs) >= {"churn", "buy_strict", "buy_rough"} and set(trained) == set(runs)
    assert runs["buy_strict"].error == "not enough data to train: too few examples"
    assert runs["buy_rough"].scoring is not None and runs["buy_rough"].scoring.fallback
    assert runs["churn"].scoring is not None and runs["churn"].scoring.model_version == "1"
