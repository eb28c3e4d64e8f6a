"""MLflow at the edge: the one module that imports mlflow.

One experiment per prediction key; each training is a run with its parameters, the held-out
metrics of the model and of the baselines, the model card's plots, the training-set definition,
and the model as a pyfunc with signature and input example, registered under
``prediction-<key>``. The alias ``champion`` moves to the new version only through the gate
(:mod:`models.gate`); its decision and reason are tags of the run and of the version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightgbm
import mlflow
import pandas as pd
import scipy
import sklearn
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from models.evaluate import predicted
from models.gate import Gate, GateDecision, decide

CHAMPION = "champion"
# Listed rather than inferred: inference loads the model in a subprocess, seconds per run.
_REQUIREMENTS = [f"lightgbm=={lightgbm.__version__}", f"scikit-learn=={sklearn.__version__}",
                 f"scipy=={scipy.__version__}", f"pandas=={pd.__version__}"]


def registered_name(key: str) -> str:
    return f"prediction-{key}"


class PredictionModel(mlflow.pyfunc.PythonModel):
    """A fitted predictor as a pyfunc: a feature frame in, one column ``probability`` or ``value`` out."""

    def __init__(self, model: Any, output: str) -> None:
        self.model = model
        self.output = output

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return pd.DataFrame({self.output: predicted(self.model, model_input)})


@dataclass(frozen=True)
class TrackedRun:
    run_id: str
    experiment_id: str
    model_version: str
    decision: GateDecision


def champion_metric(client: MlflowClient, name: str, metric: str) -> float | None:
    """The current champion's held-out ``model.<metric>``, or ``None`` without a champion."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return client.get_run(version.run_id).data.metrics.get(f"model.{metric}")


def track_training(
    *,
    tracking_uri: str,
    key: str,
    task: str,
    params: Mapping[str, Any],
    metrics: pd.DataFrame,
    segments: pd.DataFrame,
    figures: Mapping[str, Figure],
    training_set: Mapping[str, Any],
    model: Any,
    input_example: pd.DataFrame,
    gate: Gate = Gate(),
) -> TrackedRun:
    """Log one training run, register its model, and move ``champion`` if the gate lets it.

    Parameters
    ----------
    tracking_uri : str
        Where MLflow stores runs and the registry (from the caller's settings).
    key : str
        The prediction key: experiment ``prediction-<key>``, registered model of the same name.
    task : str
        ``churn``, ``purchase``, ``goal`` or ``value`` (the gate's default metric, the output column).
    params : mapping
        Flat parameters (definition, hyper-parameters, cutoffs).
    metrics : pandas.DataFrame
        Metric rows x predictor columns (``model`` and the baselines), logged as ``<predictor>.<metric>``.
    segments : pandas.DataFrame
        Index ``(predictor, segment)``, metric columns; logged as ``segment.<segment>.<predictor>.<metric>``.
    figures : mapping
        File name -> matplotlib figure.
    training_set : mapping
        JSON-able description of the training frame (definition, cutoffs, eligibility, counts).
    model : fitted predictor
        The model to register (``predict_proba`` or ``predict``).
    input_example : pandas.DataFrame
        A few feature rows: the signature's input and the example stored with the model.
    gate : Gate
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = registered_name(key)
    experiment = mlflow.set_experiment(name)
    output = "value" if task == "value" else "probability"
    wrapped = PredictionModel(model, output)
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        mlflow.log_metrics(_flat_metrics(metrics, segments))
        for file_name, figure in figures.items():
            mlflow.log_figure(figure, f"plots/{file_name}")
        mlflow.log_dict(dict(training_set), "training_set.json")
        mlflow.log_text(metrics.to_string(float_format=lambda v: f"{v:.4f}"), "metrics.txt")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=wrapped,
            signature=infer_signature(input_example, wrapped.predict(None, input_example)),
            input_example=input_example,
            registered_model_name=name,
            pip_requirements=_REQUIREMENTS,
        )
        version = str(info.registered_model_version)
        decision = decide(gate, task, metrics, champion_metric(client, name, gate.metric_for(task)))
        tags = {"gate.decision": "promoted" if decision.promote else "refused", "gate.reason": decision.reason,
                "gate.metric": decision.metric}
        mlflow.set_tags(tags)
    for tag, value in tags.items():
        client.set_model_version_tag(name, version, tag, value)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    return TrackedRun(run.info.run_id, experiment.experiment_id, version, decision)


def champion_version(tracking_uri: str, key: str) -> str | None:
    """The registered version holding ``champion`` for a prediction key, if any."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(registered_name(key), CHAMPION).version)
    except MlflowException:
        return None


def load_champion(tracking_uri: str, key: str) -> mlflow.pyfunc.PyFuncModel:
    """The champion of a prediction key as a pyfunc (for scoring and serving)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{registered_name(key)}@{CHAMPION}")


def _param(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def _flat_metrics(metrics: pd.DataFrame, segments: pd.DataFrame) -> dict[str, float]:
    flat = {f"{predictor}.{metric}": float(metrics.at[metric, predictor])
            for predictor in metrics.columns for metric in metrics.index}
    for (predictor, segment), row in segments.iterrows():
        flat.update({f"segment.{segment}.{predictor}.{metric}": float(v) for metric, v in row.items()})
    # MLflow refuses NaN in some stores; an undefined metric (one class only) is left out instead.
    return {k: v for k, v in flat.items() if v == v}
