"""train_prediction end to end on the simulated shop, with a real MLflow store under tmp_path; the gate."""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

import features
from cdp.config import Settings
from features import NotReady, Requirements, build_training_frame
from models.baselines import BtydBaseline
from models.boosting import feature_frame
from models.evaluate import evaluate, make_model, predicted
from models.gate import LOWER_IS_BETTER, Gate, decide
from models.metrics import ClassificationMetrics, ValueMetrics
from models.plots import figures
from models.schemas import GATE_METRICS, GateRule, PredictionDefinition, eligibility_of, label_of
from models.tracking import champion_version, load_champion, registered_name, track_training
from models.train import TrainingResult, train_prediction
from tests.models_data import simulated_shop

pytestmark = pytest.mark.slow
CHURN = PredictionDefinition(key="churn_30d", kind="churn", window_days=30, training_cutoffs=3)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("mlflow")
    return Settings(home=folder / "home", mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


@pytest.fixture(scope="module")
def trained(settings: Settings) -> TrainingResult:
    shop = simulated_shop()
    return train_prediction(shop.engine, CHURN, as_of=shop.end, settings=settings)


def test_train_tracks_registers_and_crowns_the_first_model(settings: Settings, trained: TrainingResult) -> None:
    assert not trained.fallback and trained.readiness.ok and len(trained.cutoffs) == 5
    assert list(trained.metrics.columns) == ["model", "recency", "repeat_rate", "btyd", "single_cutoff_gbm"]
    assert trained.decision.promote and trained.model_version == "1" and "beats recency" in trained.decision.reason
    assert "gate: promoted v1" in str(trained)

    uri = settings.resolved_mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(trained.run_id)
    assert run.data.metrics["model.roc_auc"] == pytest.approx(trained.metrics.at["roc_auc", "model"])
    assert {"recency.roc_auc", "btyd.log_loss", "segment.returning.model.roc_auc"} <= set(run.data.metrics)
    assert run.data.tags["gate.decision"] == "promoted" and run.data.params["definition.kind"] == "churn"
    artifacts = {a.path for a in client.list_artifacts(trained.run_id, "plots")}
    assert artifacts == {f"plots/{n}" for n in ("roc.png", "calibration.png", "gains.png", "feature_importance.png")}
    training_set = json.loads(Path(client.download_artifacts(trained.run_id, "training_set.json")).read_text())
    assert training_set["roles"][-2:] == ["calibrate", "holdout"] and training_set["label"] == "churn (no any event)"
    assert client.get_experiment_by_name(registered_name(CHURN.key)) is not None

    # The registered pyfunc answers as the model does on today's features; nothing went to the cwd.
    today = features.load(simulated_shop().engine, as_of=trained.as_of)[trained.model.feature_names_in_].head(20)
    served = load_champion(uri, CHURN.key).predict(today.reset_index(drop=True))
    np.testing.assert_allclose(served["probability"], predicted(trained.model, today))
    assert not Path("mlflow.db").exists()


def test_the_gate_refuses_a_worse_model_and_keeps_the_champion(settings: Settings, trained: TrainingResult,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    shop = simulated_shop()
    frame = build_training_frame(shop.engine, cutoffs=list(trained.cutoffs), horizon=CHURN.horizon,
                                 label=label_of(CHURN), eligibility=eligibility_of(CHURN))
    stumps = make_model("churn", 30, n_estimators=2, num_leaves=2, btyd=False)
    worse = evaluate(frame, task="churn", horizon_days=30, model=stumps)
    assert worse.metrics.at["roc_auc", "model"] < trained.metrics.at["roc_auc", "model"] - 0.02
    uri = settings.resolved_mlflow_tracking_uri
    pyfunc_log = logging.getLogger("mlflow.pyfunc")  # MLflow's loggers don't propagate to caplog's
    pyfunc_log.addHandler(caplog.handler)
    try:
        tracked = track_training(
            tracking_uri=uri, key=CHURN.key, task="churn", params={"model": "two stumps"}, metrics=worse.metrics,
            segments=worse.segments, figures=figures(worse, stumps.feature_importance()),
            training_set={"rows": len(frame)}, model=stumps, input_example=feature_frame(frame).head(5),
            gate=Gate(beat_baselines=False),  # only the champion stands in the way
        )
    finally:
        pyfunc_log.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if "python_model" in r.getMessage()], "MLflow's pickle notice is printed"
    assert not tracked.decision.promote and tracked.model_version == "2"
    assert "does not beat champion" in tracked.decision.reason
    assert champion_version(uri, CHURN.key) == "1"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_run(tracked.run_id).data.tags["gate.decision"] == "refused"
    assert client.get_model_version(registered_name(CHURN.key), "2").tags["gate.reason"] == tracked.decision.reason


def test_the_definitions_gate_decides(settings: Settings, trained: TrainingResult) -> None:
    shop = simulated_shop()
    strict = CHURN.model_copy(update={"training_cutoffs": 1, "gate": GateRule(metric="brier", min_improvement=0.5)})
    refused = train_prediction(shop.engine, strict, as_of=shop.end, settings=settings)
    assert not refused.decision.promote and refused.decision.metric == "brier"
    assert "does not beat recency" in refused.decision.reason and refused.decision.reason.endswith("by 0.5")
    assert champion_version(settings.resolved_mlflow_tracking_uri, CHURN.key) == trained.model_version


def test_readiness_failure_refuses_or_falls_back(settings: Settings) -> None:
    shop = simulated_shop()
    impossible = Requirements(min_positives=10**6)
    short = CHURN.model_copy(update={"training_cutoffs": 1})  # a smaller frame: the verdict is the same
    with pytest.raises(NotReady, match="too few examples"):
        train_prediction(shop.engine, short, as_of=shop.end, settings=settings, requirements=impossible)
    heuristic = short.model_copy(update={"fallback": "heuristic"})
    result = train_prediction(shop.engine, heuristic, as_of=shop.end, settings=settings, requirements=impossible)
    assert result.fallback and isinstance(result.model, BtydBaseline) and result.run_id is None
    assert "FALLBACK BtydBaseline" in str(result)


def test_gate_decisions() -> None:
    metrics = pd.DataFrame({"model": [0.80, 0.40], "recency": [0.70, 0.45], "btyd": [0.60, 0.50]},
                           index=["roc_auc", "log_loss"])
    assert decide(Gate(), "churn", metrics, champion=None).promote
    assert decide(Gate(), "churn", metrics, champion=0.79).promote
    refused = decide(Gate(), "churn", metrics, champion=0.81)
    assert not refused.promote and refused.reason == "roc_auc 0.8000 does not beat champion 0.8100 by 0"
    assert not decide(Gate(min_improvement=0.15), "churn", metrics, champion=None).promote  # recency within 0.15
    assert decide(Gate(metric="log_loss"), "churn", metrics, champion=0.41).promote  # lower is better
    assert not decide(Gate(metric="log_loss"), "churn", metrics, champion=0.39).promote
    with pytest.raises(ValueError, match="normalized_gini"):
        decide(Gate(), "value", metrics, champion=None)


def test_the_gate_metrics_a_definition_may_name_are_those_the_evaluation_reports() -> None:
    rows = {"probability": ClassificationMetrics, "value": ValueMetrics}
    for task, names in GATE_METRICS.items():
        assert set(names) <= {f.name for f in fields(rows[task])} - {"n", "positive_rate", "mean_actual"}, task
    assert LOWER_IS_BETTER <= {name for names in GATE_METRICS.values() for name in names}


def test_definitions_map_to_labels_and_folds_that_never_see_the_validation_window() -> None:
    as_of = datetime(2026, 8, 1, tzinfo=UTC)
    definition = PredictionDefinition(key="buy", kind="purchase", window_days=14, training_cutoffs=3,
                                      cutoff_spacing_days=5, min_purchases=1)
    cutoffs = definition.cutoffs(as_of)
    assert cutoffs[-1] + definition.horizon == as_of
    assert cutoffs[-2] + definition.horizon == cutoffs[-1]  # calibration window ends where the holdout begins
    assert cutoffs[-2] - cutoffs[-3] == cutoffs[1] - cutoffs[0] == pd.Timedelta(days=5) and len(cutoffs) == 5
    # Training windows may overlap the calibration one; none reaches the validation window.
    assert all(cutoff + definition.horizon <= cutoffs[-1] for cutoff in cutoffs[:-1])
    default = definition.model_copy(update={"cutoff_spacing_days": None}).cutoffs(as_of)
    assert default[-2] - default[-3] == default[1] - default[0] == pd.Timedelta(days=7)  # half the window
    assert label_of(definition).describe() == "goal (Order Completed, at least 1x)"
    assert [r.describe() for r in eligibility_of(definition)] == ["active in the last 90 days", "at least 1 purchases"]
    assert PredictionDefinition(key="ltv", kind="ltv").task == "value"
    with pytest.raises(ValueError, match="goal_event"):
        PredictionDefinition(key="g", kind="custom")
    with pytest.raises(ValueError, match="timezone-aware"):
        definition.cutoffs(datetime(2026, 8, 1))
