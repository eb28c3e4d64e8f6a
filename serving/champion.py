"""The recommender champion in memory, hot-swapped when the registry names a new one.

A background thread asks the MLflow registry every ``CDP_RECS_POLL_SECONDS`` which version holds
``champion``; when it changed, it loads that version and replaces :attr:`ChampionHolder.current`
in one assignment. A request reads the reference once and uses that model to the end, so a swap
never fails or mixes two models; the old one is freed when its last request is done. The same
thread reads the imported catalog (availability) on every poll and swaps in a model aligned to it
when it changed (only then: a serving model keeps the lists it scored on demand).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from features.interactions import read_imported_catalog, with_imported
from models.recommend.serve import ServingModel
from models.tracking import load_recommender, recommender_champion_version

log = logging.getLogger(__name__)


class ChampionHolder:
    """``current``: the serving model, or ``None`` until a recommender has been promoted."""

    def __init__(self, engine: Engine, tracking_uri: str, *, poll_seconds: float) -> None:
        self.current: ServingModel | None = None
        self._engine = engine
        self._tracking_uri = tracking_uri
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True, name="recommender-champion")

    def start(self) -> ChampionHolder:
        """Load the champion now (the server starts with it), then follow the registry."""
        self._refresh_safely()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def refresh(self) -> None:
        """Swap in the registry's champion if it changed, else only the catalog's availability."""
        version = recommender_champion_version(self._tracking_uri)
        if version is None:
            return
        held = self.current
        same = held is not None and held.version == version
        bundle = held.bundle if same else load_recommender(self._tracking_uri, version)
        catalog = with_imported(bundle.catalog, read_imported_catalog(self._engine))
        if same and held is not None and held.catalog_frame.equals(catalog):
            return
        self.current = ServingModel(bundle, version, catalog)
        if not same:
            log.warning("recommender champion v%s (%s) now serving", version, bundle.name)

    def _follow(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            self._refresh_safely()

    def _refresh_safely(self) -> None:
        try:
            self.refresh()
        except Exception:  # a registry or store hiccup must not stop the server or the model it holds
            log.exception("recommender champion refresh failed; keeping the current one")
