"""Train the recommender end to end: interactions as of a date, selection, MLflow, the gate.

:func:`train_recommender` is the plain function behind ``cdp recs train`` (and the Prefect flow
that will call it): read the interactions and the catalog visible at ``as_of``, run
:func:`models.recommend.evaluate.select_recommender`, register the chosen model with the
popularity fallback and the catalog as one bundle, and let the gate decide whether it becomes
``champion`` (it must beat popularity and the current champion on test NDCG@10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from cdp.config import Settings
from features.interactions import InteractionSpec, read_catalog, read_imported_catalog, read_interactions, with_imported
from models.gate import Gate, GateDecision
from models.recommend.evaluate import BASELINE, Candidate, Selection, select_recommender
from models.recommend.popularity import PopularityRecommender
from models.recommend.serve import RecommenderBundle, precompute
from models.tracking import track_recommender

K = 10
GATE = Gate(metric=f"ndcg@{K}")
_REPORTED = (f"ndcg@{K}", f"hr@{K}", f"precision@{K}", f"recall@{K}", f"map@{K}", f"coverage@{K}", f"popularity@{K}")


@dataclass(frozen=True)
class RecommenderTraining:
    """What a training produced.

    Attributes
    ----------
    selection : Selection
        The offline table (every family and the blend, test metrics) and the chosen model.
    metrics : pandas.DataFrame
        Test metric rows x ``model`` (the chosen one) and ``popularity``: what the gate judged.
    bundle : RecommenderBundle
        What was registered.
    decision, run_id, model_version
        ``None`` when not tracked.
    """

    as_of: datetime
    selection: Selection
    metrics: pd.DataFrame
    bundle: RecommenderBundle
    decision: GateDecision | None = None
    run_id: str | None = None
    model_version: str | None = None

    @property
    def promoted(self) -> bool:
        return self.decision is not None and self.decision.promote

    @property
    def gate_line(self) -> str | None:
        """What the gate decided and why, in one line; ``None`` for an untracked training."""
        if self.decision is None:
            return None
        return f"gate: {'promoted' if self.decision.promote else 'refused'} v{self.model_version}: {self.decision.reason}"

    def __str__(self) -> str:
        lines = [f"recommender as of {self.as_of:%Y-%m-%d %H:%M}: chosen {self.selection.name!r} by validation NDCG@{K}",
                 self.metrics.to_string(float_format=lambda v: f"{v:.4f}")]
        if (gate := self.gate_line) is not None:
            lines.append(gate)
        return "\n".join(lines)


def train_recommender(
    engine: Engine,
    settings: Settings,
    *,
    as_of: datetime,
    candidates: Sequence[Candidate] | None = None,
    spec: InteractionSpec = InteractionSpec(),
    gate: Gate = GATE,
    track: bool = True,
) -> RecommenderTraining:
    """Select a recommender on the interactions visible at ``as_of``, register it, gate it.

    Parameters
    ----------
    engine : Engine
        The store.
    settings : Settings
        ``resolved_mlflow_tracking_uri`` is where runs and models go.
    as_of : datetime
        Timezone-aware; nothing received or happening later is read.
    candidates : sequence of Candidate, optional
        Families and grids (default :func:`models.recommend.evaluate.default_candidates`).
    spec : InteractionSpec
        Which events are interactions and their time decay.
    gate : Gate
        What the model must beat to become ``champion`` (default: popularity and the champion on NDCG@10).
    track : bool
        Log to MLflow and register (off for ``cdp recs evaluate``).

    Raises
    ------
    ValueError
        No interaction is visible at ``as_of``.
    """
    rows = read_interactions(engine, as_of=as_of, spec=spec)
    if rows.empty:
        raise ValueError(f"no interactions visible as of {as_of.isoformat()}: nothing to train on")
    catalog = with_imported(read_catalog(engine, as_of=as_of, spec=spec), read_imported_catalog(engine))
    selection = select_recommender(rows, candidates=candidates, k=K, half_life_days=spec.half_life_days, catalog=catalog)
    metrics = side_by_side(selection.table, selection.name)
    model = selection.model
    popularity = _popularity_of(selection).fit(model.data_)
    bundle = RecommenderBundle(selection.name, model, popularity, catalog, as_of, *precompute(model))
    if not track:
        return RecommenderTraining(as_of, selection, metrics, bundle)
    tracked = track_recommender(
        tracking_uri=settings.resolved_mlflow_tracking_uri,
        params=_params(selection, rows, as_of),
        metrics=metrics,
        table=selection.table,
        bundle=bundle,
        gate=gate,
    )
    return RecommenderTraining(as_of, selection, metrics, bundle, tracked.decision, tracked.run_id, tracked.model_version)


def side_by_side(table: pd.DataFrame, chosen: str) -> pd.DataFrame:
    """Test metric rows x ``model`` (the chosen row of the selection table) and ``popularity``."""
    return pd.DataFrame({"model": table.loc[chosen, list(_REPORTED)], BASELINE: table.loc[BASELINE, list(_REPORTED)]},
                        dtype="float64")


def _popularity_of(selection: Selection) -> PopularityRecommender:
    """The fallback with the baseline's tuned half-life, refitted on all the data."""
    return PopularityRecommender(**selection.table.loc[BASELINE, "params"])


def _params(selection: Selection, rows: pd.DataFrame, as_of: datetime) -> dict[str, Any]:
    chosen = selection.table.loc[selection.name, "params"]
    return {
        "model.family": selection.name,
        "model.class": type(selection.model).__name__,
        **{f"model.{name}": value for name, value in chosen.items()},
        "as_of": as_of.isoformat(),
        "interactions": len(rows),
        "profiles": int(rows["profile_id"].nunique()),
        "items": int(rows["item_id"].nunique()),
    }
