"""Scores of a scoring frame, ready to become predicted traits: value, percentile, decile, reasons."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.boosting import feature_frame
from models.evaluate import predicted
from models.reasons import top_reasons


def score_frame(model: Any, frame: pd.DataFrame, *, task: str) -> pd.DataFrame:
    """Score every row of a feature frame (e.g. :func:`features.load` as of today, reset to a column).

    Parameters
    ----------
    model : fitted predictor
        A LightGBM predictor (reasons from its contributions) or a fallback heuristic (no reasons).
    frame : pandas.DataFrame
        ``profile_id`` and the feature columns the model was fitted on.
    task : str
        ``value`` gives a ``value`` column, anything else a ``probability`` column.

    Returns
    -------
    pandas.DataFrame
        ``profile_id``; ``probability`` (calibrated) or ``value``; ``percentile`` (Segment's: share
        of profiles scored at or below, so 0.8 is the top 20 %); ``decile`` (1 = the top 10 %);
        ``reasons`` (list of up to three phrases, strongest first).
    """
    X = feature_frame(frame)
    score = predicted(model, X)
    percentile = pd.Series(score).rank(pct=True, method="max").to_numpy()
    decile = np.minimum(10, np.ceil((1.0 - percentile) * 10 + 1e-9).astype(int).clip(min=1))
    if hasattr(model, "contributions"):
        reasons = top_reasons(model.contributions(X), model.design(X))
    else:
        reasons = [[] for _ in range(len(X))]
    return pd.DataFrame({
        "profile_id": frame["profile_id"].to_numpy(),
        "value" if task == "value" else "probability": score,
        "percentile": percentile,
        "decile": decile,
        "reasons": reasons,
    })
