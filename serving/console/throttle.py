"""Failed sign-ins per email and client address: past a limit in a window, sign-in waits.

Kept in the server process's memory: a restart forgets it, and with several workers each counts its
own share (the limit is then per worker). That is enough to turn online password guessing from
thousands of tries an hour into tens, without a table of its own.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

MAX_FAILURES = 10
WINDOW = timedelta(minutes=15)
MAX_KEYS = 100_000  # beyond this, forget keys whose failures all left the window


class FailedSignIns:
    def __init__(self, *, limit: int = MAX_FAILURES, window: timedelta = WINDOW) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[tuple[str, str], deque[datetime]] = {}

    def wait(self, email: str, address: str, *, now: datetime) -> timedelta | None:
        """How long until this email may be tried again from this address; None when it may now."""
        recent = self._recent((email.strip().lower(), address), now)
        if len(recent) < self.limit:
            return None
        return recent[0] + self.window - now

    def failed(self, email: str, address: str, *, now: datetime) -> None:
        key = (email.strip().lower(), address)
        self._recent(key, now).append(now)
        if len(self._failures) > MAX_KEYS:
            for stale in [k for k in self._failures if not self._recent(k, now)]:
                del self._failures[stale]

    def succeeded(self, email: str, address: str) -> None:
        self._failures.pop((email.strip().lower(), address), None)

    def _recent(self, key: tuple[str, str], now: datetime) -> deque[datetime]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times
