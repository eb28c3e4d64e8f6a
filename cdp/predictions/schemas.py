"""What a prediction is: its definition, stored as JSON and read by the models above.

The mapping of a definition to the features' labels and eligibility rules is in
:mod:`models.schemas` (``cdp`` must not import ``features``).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdp.errors import validated


Kind = Literal["churn", "purchase", "ltv", "custom"]
# What each kind predicts, in the words of the baselines and metrics (models.baselines.KINDS).
TASKS = {"churn": "churn", "purchase": "purchase", "ltv": "value", "custom": "goal"}
WINDOW_PRESETS = (7, 14, 30, 60, 90, 120)
# What a gate may judge on, by what a task predicts: rows of models.metrics' tables (a value's
# aggregate error is signed, so neither higher nor lower is better, and it is not among them).
GATE_METRICS = {
    "probability": ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_lift"),
    "value": ("normalized_gini", "spearman", "mae", "rmse", "top_decile_share"),
}


class GateRule(BaseModel):
    """What a trained model must beat on its held-out cutoff to become the ``champion`` that scores.

    By default the baselines of the same run (recency, naive repeat rate, BTYD) and the current
    champion, on ROC AUC (``normalized_gini`` for ``ltv``), by any margin. Without the baselines,
    a first model is promoted whatever they scored (a backtest of the model itself, say); the card
    still shows them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    metric: str | None = Field(default=None, description="A held-out metric; default roc_auc, normalized_gini for ltv.")
    min_improvement: float = Field(default=0.0, ge=0.0, description="Margin over each opponent, in the metric's units.")
    beat_baselines: bool = True
    beat_champion: bool = True


class PredictionDefinition(BaseModel):
    """A prediction: what to predict, over which window, for whom, and how to train it.

    ``churn``: no qualifying event (``events``; default any event) in the window.
    ``purchase``: a purchase (``events``; default ``Order Completed``) in the window.
    ``ltv``: revenue (property ``revenue``, else products' price x quantity) in the window.
    ``custom``: ``goal_event`` (with ``goal_properties``) at least ``goal_min_count`` times.
    Eligible profiles were active in the ``active_within_days`` before the cutoff and, if set,
    made at least ``min_purchases`` purchases.
    """

    # Stored as JSON, which has no infinity or NaN (it would come back as null).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Trait prefix: K_probability, K_value, ...")
    kind: Kind
    window_days: int = Field(default=30, ge=1, le=730)
    events: tuple[str, ...] | None = None
    revenue: str = "revenue"
    goal_event: str | None = None
    goal_properties: dict[str, str | bool | int | float] = Field(default_factory=dict)
    goal_min_count: int = Field(default=1, ge=1)
    active_within_days: int | None = Field(default=90, ge=1)
    min_purchases: int | None = Field(default=None, ge=1)
    feature_set: str = "default"
    training_cutoffs: int = Field(default=4, ge=1, description="Cutoffs stacked to fit, before the calibration one.")
    cutoff_spacing_days: int | None = Field(default=None, ge=1, description="Between training cutoffs; default half the window.")
    fallback: Literal["refuse", "heuristic"] = "refuse"
    gate: GateRule = Field(default_factory=GateRule)
    version: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _complete(self) -> PredictionDefinition:
        if self.kind == "custom" and not self.goal_event:
            raise ValueError("a custom prediction needs goal_event")
        if self.kind != "custom" and (self.goal_event or self.goal_properties):
            raise ValueError("goal_event and goal_properties are for custom predictions")
        if self.kind == "purchase" and self.events and len(self.events) > 1:
            raise ValueError("a purchase prediction takes one purchase event; several: a custom goal per event")
        metrics = GATE_METRICS["value" if self.task == "value" else "probability"]
        if self.gate.metric is not None and self.gate.metric not in metrics:
            raise ValueError(f"gate metric {self.gate.metric!r}: {self.kind} predictions are judged on one of "
                             f"{', '.join(metrics)}")
        return self

    @property
    def task(self) -> str:
        """``churn``, ``purchase``, ``goal`` or ``value``."""
        return TASKS[self.kind]

    @property
    def horizon(self) -> timedelta:
        return timedelta(days=self.window_days)

    def cutoffs(self, as_of: datetime) -> list[datetime]:
        """Training cutoffs, then the calibration cutoff, then the validation cutoff, oldest first.

        Validation at ``as_of - window``, calibration one window earlier (its label window ends
        where validation's begins), and ``training_cutoffs`` before it, ``cutoff_spacing_days``
        apart (default half the window), the latest one spacing before calibration. Nothing
        fitted sees the validation window; training label windows overlap each other and the
        calibration one. Kept a window apart and a window before calibration, as they were, a
        year of history left only customers days old to learn from (CDNOW split at 1997-09-30,
        90 days: one training cutoff, 1997-01-03, and a model card whose log loss was above
        BTYD's, 0.4214 against 0.4073; half a window apart: 0.3996 against 0.4078, and the
        backtest's holdout no worse, see bench.backtest).
        """
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        validation = as_of - self.horizon
        calibration = validation - self.horizon
        spacing = timedelta(days=self.cutoff_spacing_days or math.ceil(self.window_days / 2))
        training = [calibration - spacing * k for k in range(self.training_cutoffs, 0, -1)]
        return [*training, calibration, validation]


def parse_definition(data: Any) -> PredictionDefinition:
    """A definition from JSON data, or ``InvalidInput`` naming the first problem."""
    return validated(PredictionDefinition, data, what="prediction", named_by="key")
