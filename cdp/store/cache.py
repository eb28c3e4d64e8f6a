"""Values read from the store and kept per process for a few seconds, for the ingestion hot path."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Hashable
from typing import ClassVar, Generic, TypeVar

from sqlalchemy import Connection

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class StoreCache(Generic[K, V]):
    """``load()``'s answer per store and key, reused for ``seconds``.

    Keyed by the store's URL, so two stores in one process never share entries. A process that
    writes what is cached calls ``forget`` and sees its own change at once; other processes (server
    workers, the CLI) see it within ``seconds``.
    """

    _instances: ClassVar[weakref.WeakSet[StoreCache]] = weakref.WeakSet()  # type: ignore[type-arg]

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[tuple[str, K], tuple[V, float]] = {}
        StoreCache._instances.add(self)

    def get(self, conn: Connection, key: K, load: Callable[[], V]) -> V:
        entry = (conn.engine.url.render_as_string(hide_password=True), key)
        hit = self._entries.get(entry)
        clock = time.monotonic()
        if hit is not None and hit[1] > clock:
            return hit[0]
        value = load()
        self._entries[entry] = (value, clock + self.seconds)
        return value

    def forget(self) -> None:
        self._entries.clear()

    @classmethod
    def forget_all(cls) -> None:
        """Empty every cache of the process: a store dropped and created again under the same URL
        (as the tests do) must not be answered from the old one's entries."""
        for cache in list(cls._instances):
            cache.forget()
