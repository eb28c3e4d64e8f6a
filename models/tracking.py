"""MLflow at the edge: the one module that imports mlflow.

Predictions: one experiment per prediction key; each training is a run with its parameters, the held-out
metrics of the model and of the baselines, the model card's plots, the training-set definition,
and the model as a pyfunc with signature and input example, registered under
``prediction-<key>``. The alias ``champion`` moves to the new version only through the gate
(:mod:`models.gate`); its decision and reason are tags of the run and of the version.

Recommendations: one experiment and registered model ``recommender``; each training logs the
offline table (every family beside popularity), the chosen model's test metrics as ``model.*``
and a pyfunc holding the :class:`models.recommend.serve.RecommenderBundle` (one pickle: servers
load it in about a second), promoted by the same gate on NDCG@10.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import tempfile
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import implicit
import lightgbm
import mlflow
import numpy as np
import pandas as pd
import scipy
import sklearn
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.entities import Experiment, Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature

from models.evaluate import predicted
from models.gate import Gate, GateDecision, decide
from models.monitoring import Drift
from models.outcomes import Outcomes
from models.recommend.serve import RecommenderBundle

CHAMPION = "champion"
RECOMMENDER = "recommender"
DRIFT_REFERENCE = "drift_reference.json"
# Runs of an experiment are trainings or scorings (the monitoring of each scoring).
RUN_KIND = "run.kind"
# Listed rather than inferred: inference loads the model in a subprocess, seconds per run.
_COMMON_REQUIREMENTS = [f"scipy=={scipy.__version__}", f"pandas=={pd.__version__}"]
_REQUIREMENTS = [f"lightgbm=={lightgbm.__version__}", f"scikit-learn=={sklearn.__version__}", *_COMMON_REQUIREMENTS]
_RECOMMENDER_REQUIREMENTS = [f"implicit=={implicit.__version__}", f"numpy=={np.__version__}", *_COMMON_REQUIREMENTS]


class _PickleNotice(logging.Filter):
    """Drops MLflow 3's notice that a ``python_model`` object is pickled, printed once per training
    (four times in ``make demo``). It warns about loading pickles from elsewhere; ours are read only
    by this installation's own processes, from its own tracking store, and a models-from-code file
    would load a pickle of the fitted model all the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passing a Python object as `python_model`")


def _log_pyfunc(python_model: mlflow.pyfunc.PythonModel, **options: Any) -> Any:
    notice = _PickleNotice()
    logger = logging.getLogger("mlflow.pyfunc")
    logger.addFilter(notice)
    try:
        return mlflow.pyfunc.log_model(name="model", python_model=python_model, **options)
    finally:
        logger.removeFilter(notice)


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


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """A :class:`RecommenderBundle` as a pyfunc: ``profile_id`` in; ``profile_id, item_id, score, rank``
    out, the top ``n`` (a parameter, default 10) of each profile the model knows."""

    def __init__(self, bundle: RecommenderBundle) -> None:
        self.bundle = bundle

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        n = int((params or {}).get("n", 10))
        model = self.bundle.model
        profile_ids = model_input["profile_id"].to_numpy(dtype="int64")
        rows = model.data_.user_positions(profile_ids)
        known = rows >= 0
        top, scores = model.recommend_positions(rows[known], n)
        kept = top >= 0
        return pd.DataFrame({
            "profile_id": np.repeat(profile_ids[known], n)[kept.ravel()],
            "item_id": model.item_ids_[top[kept]].astype(str),
            "score": scores[kept].astype("float64"),
            "rank": np.tile(np.arange(1, n + 1), len(top))[kept.ravel()],
        })


def champion_metric(client: MlflowClient, name: str, metric: str) -> float | None:
    """The current champion's held-out ``model.<metric>``, or ``None`` without a champion."""
    version = _champion(client, name)
    return None if version is None else client.get_run(version.run_id).data.metrics.get(f"model.{metric_key(metric)}")


def metric_key(metric: str) -> str:
    """A metric's MLflow name: MLflow refuses ``@`` (``ndcg@10`` is logged as ``ndcg_at_10``)."""
    return metric.replace("@", "_at_")


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
    reference: Mapping[str, Any] | None = None,
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
    reference : mapping, optional
        The training's :func:`models.monitoring.drift_reference`, compared with at each scoring.
    """
    client = _client(tracking_uri)
    name = registered_name(key)
    experiment = _experiment(tracking_uri, name)
    output = "value" if task == "value" else "probability"
    wrapped = PredictionModel(model, output)
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        mlflow.set_tag(RUN_KIND, "training")
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        mlflow.log_metrics(_flat_metrics(metrics, segments))
        for file_name, figure in figures.items():
            mlflow.log_figure(figure, f"plots/{file_name}")
        mlflow.log_dict(dict(training_set), "training_set.json")
        if reference is not None:
            mlflow.log_dict(dict(reference), DRIFT_REFERENCE)
        mlflow.log_text(metrics.to_string(float_format=lambda v: f"{v:.4f}"), "metrics.txt")
        info = _log_pyfunc(
            wrapped,
            signature=infer_signature(input_example, wrapped.predict(None, input_example)),
            input_example=input_example,
            registered_model_name=name,
            pip_requirements=_REQUIREMENTS,
        )
        version = str(info.registered_model_version)
        decision = _judge(client, name, version, gate, task, metrics)
    return TrackedRun(run.info.run_id, experiment.experiment_id, version, decision)


def track_recommender(
    *,
    tracking_uri: str,
    params: Mapping[str, Any],
    metrics: pd.DataFrame,
    table: pd.DataFrame,
    bundle: RecommenderBundle,
    gate: Gate,
) -> TrackedRun:
    """Log one recommender training, register its bundle, and move ``champion`` if the gate lets it.

    Parameters
    ----------
    tracking_uri : str
    params : mapping
        Flat parameters (the chosen family, its hyper-parameters, data sizes, as_of).
    metrics : pandas.DataFrame
        Test metric rows x ``model`` (the chosen one) and ``popularity``: what the gate judges.
    table : pandas.DataFrame
        The whole selection table (:class:`models.recommend.evaluate.Selection`), one row per family;
        its metrics are logged as ``<family>.<metric>`` and the table as ``selection.txt``.
    bundle : RecommenderBundle
    gate : Gate
        Its ``metric`` must be set (``ndcg@10``).
    """
    client = _client(tracking_uri)
    experiment = _experiment(tracking_uri, RECOMMENDER)
    numeric = table.drop(columns=["params"]).T.astype("float64")
    wrapped = RecommenderModel(bundle)
    example = pd.DataFrame({"profile_id": bundle.model.user_ids_[:3].astype("int64")})
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        mlflow.log_metrics({**_flat_metrics(numeric, pd.DataFrame()), **_flat_metrics(metrics[["model"]], pd.DataFrame())})
        mlflow.log_text(table.to_string(float_format=lambda v: f"{v:.4f}"), "selection.txt")
        info = _log_pyfunc(
            wrapped,
            signature=infer_signature(example, wrapped.predict(None, example), params={"n": 10}),
            input_example=example,
            registered_model_name=RECOMMENDER,
            pip_requirements=_RECOMMENDER_REQUIREMENTS,
        )
        version = str(info.registered_model_version)
        decision = _judge(client, RECOMMENDER, version, gate, "ranking", metrics)
    return TrackedRun(run.info.run_id, experiment.experiment_id, version, decision)


def _judge(client: MlflowClient, name: str, version: str, gate: Gate, task: str, metrics: pd.DataFrame) -> GateDecision:
    """The gate's decision on a registered version, tagged on the active run and the version; the alias follows it."""
    decision = decide(gate, task, metrics, champion_metric(client, name, gate.metric_for(task)))
    tags = {"gate.decision": "promoted" if decision.promote else "refused", "gate.reason": decision.reason,
            "gate.metric": decision.metric}
    mlflow.set_tags(tags)
    for tag, value in tags.items():
        client.set_model_version_tag(name, version, tag, value)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    return decision


def champion_version(tracking_uri: str, key: str) -> str | None:
    """The registered version holding ``champion`` for a prediction key, if any."""
    version = _champion(_client(tracking_uri), registered_name(key))
    return None if version is None else str(version.version)


def load_champion(tracking_uri: str, key: str) -> mlflow.pyfunc.PyFuncModel:
    """The champion of a prediction key as a pyfunc (for serving)."""
    _client(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{registered_name(key)}@{CHAMPION}")


@dataclass(frozen=True)
class Champion:
    """The champion's fitted predictor itself (its contributions give the reasons), and where it came from."""

    model: Any
    version: str
    run_id: str
    reference: dict[str, Any] | None  # the drift reference of its training, if it logged one


def champion_predictor(tracking_uri: str, key: str) -> Champion | None:
    """The champion of a prediction key unwrapped from its pyfunc, or ``None`` when there is none."""
    client = _client(tracking_uri)
    version = _champion(client, registered_name(key))
    if version is None:
        return None
    wrapped = mlflow.pyfunc.load_model(f"models:/{registered_name(key)}/{version.version}").unwrap_python_model()
    names = {artifact.path for artifact in client.list_artifacts(version.run_id)}
    reference = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{DRIFT_REFERENCE}") if DRIFT_REFERENCE in names else None
    return Champion(wrapped.model, str(version.version), version.run_id, reference)


def log_scoring(*, tracking_uri: str, key: str, model_version: str, as_of: datetime, profiles: int,
                drift: Drift | None) -> str:
    """Record a scoring as a run of the prediction's experiment: how many profiles, and the drift."""
    _client(tracking_uri)
    experiment = _experiment(tracking_uri, registered_name(key))
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"scoring {as_of:%Y-%m-%d}") as run:
        mlflow.set_tags({RUN_KIND: "scoring", "model_version": model_version, "as_of": as_of.isoformat()})
        metrics = {"profiles": float(profiles), **(drift.metrics() if drift is not None else {})}
        mlflow.log_metrics({_metric_name(k): v for k, v in metrics.items() if v == v})
    return run.info.run_id


def log_outcomes(*, tracking_uri: str, outcomes: Outcomes) -> str:
    """Record the realized outcomes of a past scoring as a run of the prediction's experiment: per decile
    ``decile_NN.predicted`` and ``decile_NN.realized`` as metrics, the whole table as ``outcomes.json``."""
    _client(tracking_uri)
    experiment = _experiment(tracking_uri, registered_name(outcomes.key))
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"outcomes {outcomes.as_of:%Y-%m-%d}") as run:
        mlflow.set_tags({RUN_KIND: "outcomes", "model_version": outcomes.model_version,
                         "as_of": outcomes.as_of.isoformat(), "window_end": outcomes.window_end.isoformat()})
        metrics = {"profiles": float(outcomes.bands["n"].sum()), "predicted": outcomes.predicted,
                   "realized": outcomes.realized}
        for decile, row in outcomes.bands.iterrows():
            metrics.update({f"decile_{decile:02d}.predicted": row["predicted"], f"decile_{decile:02d}.realized": row["realized"]})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(outcomes.as_json(), "outcomes.json")
    return run.info.run_id


def model_card(tracking_uri: str, key: str) -> dict[str, Any] | None:
    """The card of a prediction's champion (:func:`champion_card`)."""
    return champion_card(tracking_uri, registered_name(key))


def champion_card(tracking_uri: str, registered: str) -> dict[str, Any] | None:
    """The champion's card: version, gate decision, held-out metrics per predictor (the model beside the
    baselines), artifact paths, the last scoring's drift and the last realized outcomes logged (by decile);
    ``None`` without a champion."""
    if not _store_exists(tracking_uri):
        return None
    client = _client(tracking_uri)
    version = _champion(client, registered)
    if version is None:
        return None
    run = client.get_run(version.run_id)
    metrics: dict[str, dict[str, float]] = {}
    for name, value in sorted(run.data.metrics.items()):
        predictor, _, metric = name.partition(".")
        if predictor != "segment":
            metrics.setdefault(predictor, {})[metric] = value
    artifacts = [a.path for top in client.list_artifacts(run.info.run_id)
                 for a in (client.list_artifacts(run.info.run_id, top.path) if top.is_dir else [top])]
    last, outcomes = _latest_run(client, run.info.experiment_id, "scoring"), _latest_run(client, run.info.experiment_id, "outcomes")
    return {
        "model_version": str(version.version),
        "run_id": run.info.run_id,
        "trained_at": datetime.fromtimestamp(run.info.start_time / 1000).astimezone().isoformat(),
        "gate": {"decision": run.data.tags.get("gate.decision"), "reason": run.data.tags.get("gate.reason"),
                 "metric": run.data.tags.get("gate.metric")},
        "metrics": metrics,
        "artifacts": artifacts,
        "last_scoring": {"as_of": last.data.tags.get("as_of"), "model_version": last.data.tags.get("model_version"),
                         "metrics": last.data.metrics} if last else None,
        "last_outcomes": {"as_of": outcomes.data.tags.get("as_of"), "window_end": outcomes.data.tags.get("window_end"),
                          "model_version": outcomes.data.tags.get("model_version"),
                          "metrics": outcomes.data.metrics} if outcomes else None,
    }


def _latest_run(client: MlflowClient, experiment_id: str, kind: str) -> Run | None:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KIND}` = '{kind}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def latest_trainings(tracking_uri: str, *, limit: int = 5) -> list[dict[str, Any]]:
    """The newest training runs of every prediction, newest first, with the gate's decision."""
    if not _store_exists(tracking_uri):
        return []
    client = _client(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments(max_results=200)]
    if not experiments:
        return []
    runs = client.search_runs(experiments, filter_string=f"tags.`{RUN_KIND}` = 'training'",
                              order_by=["attributes.start_time DESC"], max_results=limit)
    names = {e: client.get_experiment(e).name for e in {run.info.experiment_id for run in runs}}
    return [{"model": names[run.info.experiment_id], "run_id": run.info.run_id, "status": run.info.status,
             "started_at": datetime.fromtimestamp(run.info.start_time / 1000).astimezone().isoformat(),
             "gate": run.data.tags.get("gate.decision"), "gate_reason": run.data.tags.get("gate.reason")}
            for run in runs]


def champions(tracking_uri: str) -> dict[str, str]:
    """Registered model name -> the version holding ``champion``, for every model that has one (one query)."""
    if not _store_exists(tracking_uri):
        return {}
    found = _client(tracking_uri).search_registered_models(max_results=1000)
    return {model.name: str(model.aliases[CHAMPION]) for model in found if CHAMPION in (model.aliases or {})}


def tracking_state(tracking_uri: str) -> tuple[Any, ...]:
    """What changes whenever a card, a champion or the latest trainings may have: the champion of every
    registered model, and the newest run of any experiment with its status (a run being logged ends later)."""
    if not _store_exists(tracking_uri):
        return ()
    client = _client(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments(max_results=200)]
    newest = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1) if experiments else []
    run = (newest[0].info.run_id, newest[0].info.status, newest[0].info.end_time) if newest else None
    return tuple(sorted(champions(tracking_uri).items())), run


def plot_artifact(tracking_uri: str, key: str, name: str) -> bytes | None:
    """A model card plot (``plots/NAME`` of the champion's training run) as PNG bytes; ``None`` when absent."""
    if not _store_exists(tracking_uri):
        return None
    client = _client(tracking_uri)
    version = _champion(client, registered_name(key))
    if version is None or f"plots/{name}" not in {a.path for a in client.list_artifacts(version.run_id, "plots")}:
        return None
    with tempfile.TemporaryDirectory() as folder:
        return Path(client.download_artifacts(version.run_id, f"plots/{name}", folder)).read_bytes()


def recommender_champion_version(tracking_uri: str) -> str | None:
    """The recommender version holding ``champion``, if any (what servers poll).

    On a SQLite registry this reads the alias table directly, read-only: opening it with
    ``MlflowClient`` creates and migrates the database when it is new or half-migrated, and server
    workers polling while a training creates it would race that migration and corrupt it.
    """
    if not tracking_uri.startswith("sqlite:///"):
        version = _champion(_client(tracking_uri), RECOMMENDER)
        return None if version is None else str(version.version)
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                               (RECOMMENDER, CHAMPION)).fetchone()
    except sqlite3.OperationalError:  # no such table yet: the first training is still creating the registry
        return None
    return None if row is None else str(row[0])


def _store_exists(tracking_uri: str) -> bool:
    """False for a SQLite tracking store not created yet: reading one would create it (seconds), to find nothing."""
    return not tracking_uri.startswith("sqlite:///") or Path(tracking_uri.removeprefix("sqlite:///")).exists()


def _client(tracking_uri: str) -> MlflowClient:
    """A client on ``tracking_uri``, also made the fluent API's tracking and registry URI."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _experiment(tracking_uri: str, name: str) -> Experiment:
    """The experiment ``name``, made active; a new one on a SQLite store keeps its artifacts beside
    the store (MLflow would put them in ``./mlruns`` of whatever folder the process runs in)."""
    if mlflow.get_experiment_by_name(name) is None and tracking_uri.startswith("sqlite:///"):
        root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name
        mlflow.create_experiment(name, artifact_location=root.resolve().as_uri())
    return mlflow.set_experiment(name)


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _metric_name(name: str) -> str:
    """MLflow takes letters, digits and ``_ - . / :`` and spaces; a category's name may hold others."""
    return re.sub(r"[^\w\-./: ]", "_", name)


def load_recommender(tracking_uri: str, version: str) -> RecommenderBundle:
    """A registered recommender version's bundle (by version, not alias: the alias may move meanwhile)."""
    _client(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{RECOMMENDER}/{version}")
    return model.unwrap_python_model().bundle


def _param(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def _flat_metrics(metrics: pd.DataFrame, segments: pd.DataFrame) -> dict[str, float]:
    flat = {f"{predictor}.{metric_key(metric)}": float(metrics.at[metric, predictor])
            for predictor in metrics.columns for metric in metrics.index}
    for (predictor, segment), row in segments.iterrows():
        flat.update({f"segment.{segment}.{predictor}.{metric_key(metric)}": float(v) for metric, v in row.items()})
    # MLflow refuses NaN in some stores; an undefined metric (one class only) is left out instead.
    return {k: v for k, v in flat.items() if v == v}
