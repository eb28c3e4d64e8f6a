"""Bring your own model: scikit-learn estimators behind the predictors' contract, trained and registered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from cdp.config import Settings
from models.custom import CustomClassifier, CustomRegressor, custom_model
from models.evaluate import predicted
from models.gate import Gate
from models.schemas import PredictionDefinition
from models.tracking import champion_predictor
from models.train import train_prediction
from tests.models_data import simulated_shop


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Three cutoffs of profiles whose label follows ``signal`` (the known answer); one NaN-holding column."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return pd.DataFrame({
        "profile_id": np.arange(n),
        "cutoff": pd.to_datetime([start + timedelta(days=30 * (i % 3)) for i in range(n)], utc=True),
        "signal": signal,
        "noise": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        "label": (signal + 0.3 * rng.normal(size=n) > 0).astype("int64"),
    })


def _pipeline() -> object:
    return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression())


def test_a_classifier_pipeline_fits_the_contract_and_stays_unfitted() -> None:
    frame = _frame()
    X = frame[["signal", "noise"]]
    estimator = _pipeline()
    model = CustomClassifier(estimator).fit(X, frame["label"], frame["cutoff"])
    proba = model.predict_proba(X[["noise", "signal"]])  # columns reordered: the fitted order is used
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert model.feature_names_in_ == ["signal", "noise"] and list(model.classes_) == [0, 1]
    assert not hasattr(estimator[-1], "coef_")  # a clone was fitted, not the estimator handed in
    with pytest.raises(ValueError, match="lacks the features"):
        model.predict_proba(X[["signal"]])


def test_the_regressor_and_the_refusals() -> None:
    frame = _frame()
    X, y = frame[["signal", "noise"]], frame["signal"].clip(lower=0) * 10
    regressor = custom_model("value", make_pipeline(SimpleImputer(), LinearRegression())).fit(X, y, frame["cutoff"])
    assert isinstance(regressor, CustomRegressor) and not hasattr(regressor, "predict_proba")
    assert np.corrcoef(predicted(regressor, X), y)[0, 1] > 0.8
    with pytest.raises(TypeError, match="no predict_proba"):
        CustomClassifier(SVC()).fit(X.fillna(0), frame["label"])


@pytest.mark.slow
def test_train_prediction_registers_a_custom_estimator_that_scoring_unwraps(tmp_path) -> None:
    shop = simulated_shop()
    settings = Settings(home=tmp_path, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    definition = PredictionDefinition(key="churn_logreg", kind="churn", window_days=30, training_cutoffs=2)
    result = train_prediction(shop.engine, definition, as_of=shop.end, settings=settings, estimator=_pipeline(),
                              gate=Gate(beat_baselines=False))  # the first version: nothing else stands in the way
    assert isinstance(result.model, CustomClassifier)
    assert list(result.metrics.columns) == ["model", "recency", "repeat_rate", "btyd", "single_cutoff_gbm"]
    # A logistic regression on these features ranks churn far better than chance.
    assert result.metrics.at["roc_auc", "model"] > 0.7
    uri = settings.resolved_mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(result.run_id)
    assert run.data.params["model.class"] == "CustomClassifier" and "LogisticRegression" in run.data.params["model.estimator"]
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/roc.png" in plots and "plots/feature_importance.png" not in plots
    assert result.decision.promote
    champion = champion_predictor(uri, definition.key)
    assert isinstance(champion.model, CustomClassifier) and champion.version == result.model_version
