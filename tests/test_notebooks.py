"""The notebooks run top to bottom on a simulated shop, in a kernel of this environment, like a data scientist would."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SUMMARY = "summary"  # the tag of the cell that prints the notebook's numbers as JSON

pytestmark = pytest.mark.slow


def run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[nbformat.NotebookNode, dict]:
    """Execute a notebook (outputs kept in memory only) and return it with its summary cell's JSON."""
    # The kernel inherits this environment: everything it writes goes under tmp_path (its working directory
    # too: MLflow puts a SQLite registry's artifacts in ./mlruns), and it imports this checkout's packages
    # (PYTHONPATH) rather than those of another editable install.
    monkeypatch.setenv("CDP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CDP_NOTEBOOK_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    started = time.perf_counter()
    NotebookClient(notebook, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    print(f"{name}: {time.perf_counter() - started:.1f} s")
    return notebook, _summary(notebook)


def _summary(notebook: nbformat.NotebookNode) -> dict:
    cell = next(c for c in notebook.cells if SUMMARY in c.get("metadata", {}).get("tags", []))
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    return json.loads(text)


def test_stored_without_outputs() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert not any(c.get("outputs") or c.get("execution_count") for c in notebook.cells if c.cell_type == "code"), \
            f"{path.name}: clear the outputs before committing"


def test_predictions_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook, summary = run("01_predictions.ipynb", tmp_path, monkeypatch)
    auc = summary["roc_auc"]
    # The planted signal is learnable: both models rank churn better than recency alone, the GBM far above chance.
    assert auc["lightgbm"] > auc["recency"] and auc["logreg"] > auc["recency"] and auc["lightgbm"] > 0.75
    assert summary["champion"] == "1" and summary["scored"] > 100 and summary["scored_custom"] == summary["scored"]
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the model card's plots are drawn inline
    assert not (ROOT / "notebooks" / "mlflow.db").exists()  # the registry went to the notebook's own folder


def test_recommendations_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, summary = run("02_recommendations.ipynb", tmp_path, monkeypatch)
    assert {"popularity", "als", "bpr", "item_knn", "ease", "session"} <= set(summary["families"])
    # The simulated customers have tastes: the chosen model finds far more than popularity does.
    assert summary["ndcg@10"]["model"] > 1.5 * summary["ndcg@10"]["popularity"] and summary["promoted"]
    assert summary["strategies"] == {"known": "personalized", "anonymous": "session", "cold": "popular"}
