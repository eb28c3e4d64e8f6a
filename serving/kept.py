"""Answers too slow to compute per request, kept while what they are derived from stays the same."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class Kept:
    """``get(state, name, compute)``: ``compute()``'s answer, computed again only once ``state`` differs from
    the one it was computed in (every kept answer is dropped then). ``state`` must be cheap to read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: Any = None
        self._values: dict[Hashable, Any] = {}

    def get(self, state: Hashable, name: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if state != self._state:
                self._state, self._values = state, {}
            if name in self._values:
                return self._values[name]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            if self._state == state:  # never kept under a newer state than the one it was computed in
                self._values[name] = value
        return value
