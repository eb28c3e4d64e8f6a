"""Realized outcomes of a past scoring: what each score band was predicted to do, and what it did.

Once a scoring's window ``(as_of, as_of + window]`` has passed, the store knows what happened:
:func:`realized_outcomes` reads the scores that scoring wrote (the trait log keeps every scoring)
and the label of the same window for the same profiles, and compares them per decile of the
score (1 = the top 10 %): the mean predicted probability or value beside the realized churn,
purchase or goal rate, or the realized value. A model that ranks well has realized outcomes
falling from decile 1 to 10; a calibrated one has the two columns close.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from cdp.errors import InvalidInput, NotFound
from cdp.predictions.schemas import PredictionDefinition
from cdp.predictions.traits import score_trait, scores_as_of, scoring_times
from features.read import labels_at, snapshot
from models.schemas import label_of, purchases_of


@dataclass(frozen=True)
class Outcomes:
    """Predicted against realized, per score decile, for one past scoring.

    Attributes
    ----------
    bands : pandas.DataFrame
        Index ``decile`` (1 = highest scores); ``n``, ``predicted`` (mean score), ``realized``
        (mean outcome: a rate, or a value per profile), ``realized_total`` (positives or value).
    """

    key: str
    task: str
    as_of: datetime
    window_end: datetime
    model_version: str
    bands: pd.DataFrame

    @property
    def predicted(self) -> float:
        """Mean score over every profile scored."""
        return float(np.average(self.bands["predicted"], weights=self.bands["n"]))

    @property
    def realized(self) -> float:
        """Mean realized outcome over every profile scored."""
        return float(self.bands["realized_total"].sum() / self.bands["n"].sum())

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "task": self.task, "as_of": self.as_of.isoformat(), "window_end": self.window_end.isoformat(),
            "model_version": self.model_version, "profiles": int(self.bands["n"].sum()),
            "predicted": self.predicted, "realized": self.realized,
            "bands": [{"decile": int(decile), **{k: float(v) for k, v in row.items()}}
                      for decile, row in self.bands.iterrows()],
        }

    def __str__(self) -> str:
        what = "value" if self.task == "value" else "rate"
        head = (f"prediction {self.key!r} scored as of {self.as_of:%Y-%m-%d} by model {self.model_version}, window ended "
                f"{self.window_end:%Y-%m-%d}: predicted {what} {self.predicted:.4f}, realized {self.realized:.4f}")
        return f"{head}\n{self.bands.to_string(float_format=lambda v: f'{v:.4f}')}"


def realized_outcomes(engine: Engine, definition: PredictionDefinition, *, now: datetime,
                      as_of: datetime | None = None) -> Outcomes:
    """Compare the scoring as of ``as_of`` with what happened in its window, per score decile.

    Parameters
    ----------
    engine : Engine
        The store.
    definition : PredictionDefinition
        Its label and window say what "happened" means.
    now : datetime
        The window must have ended by then.
    as_of : datetime, optional
        Which scoring; default the latest whose window has ended by ``now``.

    Raises
    ------
    NotFound
        No scoring as of ``as_of`` (or none whose window has passed).
    InvalidInput
        The window of the scoring asked for has not ended yet.
    """
    task, horizon = definition.task, definition.horizon
    with engine.connect() as conn:
        times = scoring_times(conn, key=definition.key, task=task)
    if as_of is None:
        passed = [t for t in times if t + horizon <= now]
        if not passed:
            raise NotFound(f"prediction {definition.key!r} has no scoring whose {definition.window_days}-day window "
                           "has passed: score it as of an earlier date (`--as-of`) or come back later")
        as_of = passed[-1]
    elif as_of not in times:
        raise NotFound(f"prediction {definition.key!r} was not scored as of {as_of.isoformat()}")
    if as_of + horizon > now:
        raise InvalidInput(f"the window of the scoring as of {as_of.isoformat()} ends {(as_of + horizon).isoformat()}: "
                           "its outcomes are not known yet")
    label = label_of(definition)
    with snapshot(engine) as view:
        written = scores_as_of(view.conn, key=definition.key, task=task, as_of=as_of)
        aggregate = labels_at(view.conn, cutoff=as_of, horizon=horizon, label=label, purchases=purchases_of(definition))
    scores = pd.Series(written[score_trait(definition.key, task)], dtype=float)
    deciles = pd.Series(written[f"{definition.key}_decile"], dtype="int64").reindex(scores.index)
    outcome = label.outcome(aggregate).reindex(scores.index).fillna(label.absent).astype(float)
    versions = sorted({str(v) for v in written[f"{definition.key}_model_version"].values()})
    return Outcomes(key=definition.key, task=task, as_of=as_of, window_end=as_of + horizon,
                    model_version=", ".join(versions), bands=outcome_bands(scores, outcome, deciles))


def outcome_bands(score: pd.Series, outcome: pd.Series, decile: pd.Series) -> pd.DataFrame:
    """Per decile (1 = highest scores): ``n``, mean ``predicted`` score, mean ``realized`` outcome, its total."""
    grouped = pd.DataFrame({"predicted": score, "outcome": outcome, "decile": decile}).groupby("decile")
    return pd.DataFrame({
        "n": grouped.size(),
        "predicted": grouped["predicted"].mean(),
        "realized": grouped["outcome"].mean(),
        "realized_total": grouped["outcome"].sum(),
    }).sort_index()
