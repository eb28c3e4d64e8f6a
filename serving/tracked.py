"""What MLflow says about the models (cards, champions, latest trainings), read once per change, not per request.

MLflow answers in tens of milliseconds per call and a model card takes several: too slow for a page on a
busy machine. A server keeps what it read while the tracking store's state is the same: which version
holds ``champion`` for every model, and the newest run of any experiment. A promotion changes the
first; a training, a scoring or recorded outcomes the second. That state is read again in the
background every ``CDP_TRACKING_POLL_SECONDS`` (three queries), so a change shows within that time and
a request never waits for MLflow unless something changed. A scoring always logs its run, so what is
derived from the scores it wrote (their distribution) is kept the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from models.tracking import tracking_state
from serving.kept import Kept
from serving.refreshed import Refreshed

T = TypeVar("T")
# The first look at the tracking store may create MLflow's tables (seconds): requests meanwhile read MLflow directly.
FIRST_WAIT_S = 1.0


class Tracked:
    """``get(name, compute)``: ``compute()``'s answer, computed again only once the tracking store changed."""

    def __init__(self, tracking_uri: str, *, poll_seconds: float) -> None:
        self._state = Refreshed(lambda: tracking_state(tracking_uri), max_age_s=poll_seconds, first_wait_s=FIRST_WAIT_S)
        self._kept = Kept()

    def get(self, name: Hashable, compute: Callable[[], T]) -> T:
        state, _ = self._state.get()
        return compute() if state is None else self._kept.get(state, name, compute)
