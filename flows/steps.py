"""The steps of the daily run, in order. Each is a flow taking ``as_of`` (the run's one moment).

A new step is one module beside ``build_features.py`` and one line here, in the order they must run.
"""

from __future__ import annotations

from prefect import Flow

from flows.audiences import refresh_audiences
from flows.build_features import build_features
from flows.score import score_and_write_back
from flows.train import train

STEPS: dict[str, Flow] = {
    "build_features": build_features,
    "train": train,
    "score_and_write_back": score_and_write_back,
    "refresh_audiences": refresh_audiences,
}
