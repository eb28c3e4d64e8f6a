"""The steps of the daily run, in order. Each is a flow taking ``as_of`` (the run's one moment).

The extension point: ``train`` (models/), ``score_and_write_back`` (models/, per partition as
``build_features`` does) and ``refresh_audiences`` (cdp/audiences) join as their code lands,
each as one module beside ``build_features.py`` and one line here, in the order they must run.
"""

from __future__ import annotations

from prefect import Flow

from flows.build_features import build_features

STEPS: dict[str, Flow] = {
    "build_features": build_features,
}
