"""Per-profile reasons: the features that moved a prediction most, in words.

LightGBM's ``pred_contrib`` splits each prediction into one contribution per feature (SHAP
values). The three largest in absolute value become phrases built from the profile's own
feature values ("no purchase in 64 days", "3 orders in the last 30 days") through a small
table keyed by feature name; other features get a generic phrase from their description.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from features import get_feature

Phrase = Callable[[float], str]
TOP = 3


def _plural(n: float, one: str, many: str) -> str:
    return f"{n:.0f} {one if round(n) == 1 else many}"


def _days_since(what: str, never: str) -> Phrase:
    return lambda v: never if math.isnan(v) else f"no {what} in {_plural(v, 'day', 'days')}"


def _in_window(one: str, many: str, days: int) -> Phrase:
    return lambda v: f"{_plural(v, one, many)} in the last {days} days"


def _money(template: str) -> Phrase:
    return lambda v: template.format(f"{v:,.0f}")


def _share(template: str) -> Phrase:
    return lambda v: template.format(f"{v:.0%}")


PHRASES: dict[str, Phrase] = {
    "days_since_last_event": _days_since("activity", "no activity yet"),
    "recency_days": _days_since("purchase", "never purchased"),
    "frequency": lambda v: "never purchased" if v == 0 else _plural(v, "order", "orders") + " in total",
    "monetary": _money("{} spent in total"),
    "avg_order_value": lambda v: "no order yet" if math.isnan(v) else f"average order of {v:,.0f}",
    "tenure_days": lambda v: f"first seen {_plural(v, 'day', 'days')} ago",
    "revenue_trend_90d": lambda v: f"spending {'up' if v >= 0 else 'down'} {abs(v):,.0f} on the previous 90 days",
    "inter_purchase_days_mean": lambda v: "fewer than 2 orders" if math.isnan(v) else f"an order every {v:.0f} days",
    "btyd_p_alive": _share("{} chance of still being a customer"),
    "btyd_p_purchase": _share("{} chance of buying in the window by purchase history"),
    "btyd_expected_purchases": lambda v: f"{v:.1f} purchases expected from purchase history",
    "btyd_expected_value": _money("{} expected from purchase history"),
    "btyd_frequency": lambda v: "no repeat purchase yet" if math.isnan(v) or v == 0 else _plural(v, "repeat purchase day", "repeat purchase days"),
}
for _days in (7, 30, 90):
    PHRASES[f"purchases_{_days}d"] = _in_window("order", "orders", _days)
    PHRASES[f"events_{_days}d"] = _in_window("event", "events", _days)
    PHRASES[f"sessions_{_days}d"] = _in_window("visit", "visits", _days)
    PHRASES[f"page_{_days}d"] = _in_window("page view", "page views", _days)
    PHRASES[f"screen_{_days}d"] = _in_window("app screen", "app screens", _days)
    PHRASES[f"track_{_days}d"] = _in_window("action", "actions", _days)
for _days in (30, 90):
    PHRASES[f"revenue_{_days}d"] = _money("{} spent in the last %d days" % _days)

_CATEGORY = re.compile(r"^category_share__(.+)$")


def phrase(feature: str, value: object) -> str:
    """One feature's value in words: the table's phrase, else the feature's description and value."""
    number = _as_float(value)
    if feature in PHRASES and number is not None:
        return PHRASES[feature](number)
    category = _CATEGORY.match(feature)
    if category and number is not None:
        return f"{number:.0%} of items bought in {category.group(1).replace('_', ' ')}"
    try:
        described = get_feature(feature).description
    except KeyError:
        described = re.sub("_+", " ", feature)
    shown = "unknown" if value is None or (number is not None and math.isnan(number)) else (
        f"{number:g}" if number is not None else str(value))
    return f"{described}: {shown}"


def _as_float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def top_reasons(contributions: pd.DataFrame, values: pd.DataFrame, top: int = TOP) -> list[list[str]]:
    """The ``top`` largest contributions of each row (by absolute value), as phrases.

    Parameters
    ----------
    contributions : pandas.DataFrame
        One column per feature (a model's ``contributions(X)``), rows aligned with ``values``.
    values : pandas.DataFrame
        The feature values (``X`` plus any derived column of the model) the phrases read.

    Returns
    -------
    list of list of str
        Per row, up to ``top`` phrases, the strongest first; features with no contribution are skipped.
    """
    magnitude = contributions.abs().to_numpy()
    names = contributions.columns.to_numpy()
    order = np.argsort(-magnitude, axis=1, kind="stable")[:, :top]
    columns = [values[name].to_numpy() for name in names]  # numpy reads: pandas' .at per cell is 100 µs
    return [
        [phrase(names[j], columns[j][i]) for j in order[i] if magnitude[i, j] > 0]
        for i in range(len(order))
    ]
