"""A value too slow to compute on every request (a count over millions of rows), kept fresh in the background."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Generic, TypeVar

T = TypeVar("T")


class Refreshed(Generic[T]):
    """``compute()``'s latest answer and when it was computed, refreshed in a thread once older than ``max_age_s``.

    A request never waits for a refresh, only for the very first computation, and for at most
    ``first_wait_s``: on a small store that is the exact answer at once; on a big one the first
    requests get ``None`` ("still counting") instead of hanging.
    """

    def __init__(self, compute: Callable[[], T], *, max_age_s: float, first_wait_s: float) -> None:
        self._compute, self._max_age_s, self._first_wait_s = compute, max_age_s, first_wait_s
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at: datetime | None = None
        self._computed_at = 0.0  # monotonic
        self._running: threading.Thread | None = None

    def get(self) -> tuple[T | None, datetime | None]:
        with self._lock:
            stale = self._at is None or time.monotonic() - self._computed_at > self._max_age_s
            if stale and self._running is None:
                self._running = threading.Thread(target=self._refresh, name="refreshed-value", daemon=True)
                self._running.start()
            first = self._running if self._at is None else None
        if first is not None:
            first.join(self._first_wait_s)
        with self._lock:
            return self._value, self._at

    def _refresh(self) -> None:
        try:
            value = self._compute()
            with self._lock:
                self._value, self._at, self._computed_at = value, datetime.now(UTC), time.monotonic()
        finally:
            with self._lock:
                self._running = None
