"""A prediction's definition (stored by :mod:`cdp.predictions`) mapped to the features' labels and rules.

:class:`PredictionDefinition` lives in ``cdp`` so the store can keep it; re-exported here for the
models and notebooks. The functions below read it in the words of :mod:`features`.
"""

from __future__ import annotations

from cdp.predictions.schemas import GATE_METRICS, TASKS, WINDOW_PRESETS, GateRule, Kind, PredictionDefinition
from features import ActiveWithin, ChurnLabel, GoalLabel, MinPurchases, Purchases, ValueLabel
from features.labels import Eligibility, Label

__all__ = ["GATE_METRICS", "TASKS", "WINDOW_PRESETS", "GateRule", "Kind", "PredictionDefinition", "eligibility_of",
           "label_of", "purchases_of"]


def purchases_of(definition: PredictionDefinition) -> Purchases:
    """What the features call a purchase: the definition's events for purchase / ltv, else the default."""
    if definition.kind in ("purchase", "ltv") and definition.events:
        return Purchases(events=definition.events, revenue=definition.revenue)
    return Purchases(revenue=definition.revenue)


def label_of(definition: PredictionDefinition) -> Label:
    """The label of the window after a cutoff."""
    if definition.kind == "churn":
        return ChurnLabel(events=definition.events)
    if definition.kind == "ltv":
        bought = purchases_of(definition)
        return ValueLabel(events=bought.events, revenue=bought.revenue)
    if definition.kind == "purchase":
        return GoalLabel(event=purchases_of(definition).events[0])
    return GoalLabel(event=definition.goal_event or "", properties=definition.goal_properties,
                     min_count=definition.goal_min_count)


def eligibility_of(definition: PredictionDefinition) -> tuple[Eligibility, ...]:
    """Who is trained on and scored: the rules that must hold as of the cutoff."""
    rules: list[Eligibility] = []
    if definition.active_within_days is not None:
        rules.append(ActiveWithin(days=definition.active_within_days))
    if definition.min_purchases is not None:
        rules.append(MinPurchases(count=definition.min_purchases))
    return tuple(rules)
