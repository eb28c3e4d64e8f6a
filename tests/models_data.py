"""A simulated shop in a real store, built once per test session, and its ground truth per profile.

The simulator (:mod:`cdp.demo.simulate`) plants the signal: a latent purchase rate, a dropout
probability and a spend level per customer. The events go through the real ingestion (identity
resolution included), each batch received when its last message was sent, so point-in-time
features see them as a live store would have.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from cdp.config import Settings
from cdp.demo.load import load_simulation
from cdp.demo.simulate import SimulationConfig, generate
from cdp.setup import prepare_store
from cdp.store.tables import events

# 2000 profiles over 240 days: ~130k messages, ~800-1000 eligible profiles per monthly cutoff.
CONFIG = SimulationConfig(profiles=2000, days=240, seed=3)
HORIZON = timedelta(days=30)
LATENTS = ("purchase_rate", "dropout_p", "spend_level")


@dataclass(frozen=True)
class Shop:
    settings: Settings
    engine: Engine
    truth: pd.DataFrame  # truth.parquet, one row per simulated profile
    end: datetime

    def cutoffs(self, n: int) -> list[datetime]:
        """``n`` monthly cutoffs, the latest one horizon before the data ends."""
        return [self.end - HORIZON * k for k in range(n, 0, -1)]

    def latents(self, profile_ids: pd.Series) -> pd.DataFrame:
        """The true latent parameters of each profile id (rows aligned with ``profile_ids``)."""
        with self.engine.connect() as conn:
            ids = pd.DataFrame(conn.execute(
                select(events.c.profile_id, events.c.user_id, events.c.anonymous_id).distinct()).all(),
                columns=["profile_id", "user_id", "anonymous_id"])
        truth = self.truth.reset_index(names="row")
        # pandas joins missing keys with each other: keep identified rows only on each side.
        by_user = ids.dropna(subset=["user_id"]).merge(truth[["row", "user_id"]].dropna(), on="user_id")
        devices = truth.assign(anonymous_id=truth["anonymous_ids"].str.split(",")).explode("anonymous_id")
        by_device = ids.dropna(subset=["anonymous_id"]).merge(devices[["row", "anonymous_id"]], on="anonymous_id")
        row_of = pd.concat([by_user, by_device]).drop_duplicates("profile_id").set_index("profile_id")["row"]
        return truth.loc[row_of.reindex(profile_ids).to_numpy(), list(LATENTS)].reset_index(drop=True)


@lru_cache(maxsize=1)
def simulated_shop(config: SimulationConfig = CONFIG) -> Shop:
    """The shop, ingested into a SQLite store in a temporary folder kept for the session (removed at exit).

    Other configs (seeds, sizes) check that a figure does not hold for one draw only.
    """
    home = Path(tempfile.mkdtemp(prefix="cdp-models-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)  # a shop is 250 MB (8,000 profiles: 900 MB)
    # The history is an import: loaded in big batches, each received up to a month after its first
    # message; without backfilled_until, features at a cutoff would miss a varying last few weeks.
    settings = Settings(home=home, database_url=None, sqlite_synchronous="OFF", backfilled_until=config.end)
    engine = prepare_store(settings)
    summary = generate(home / "sim", config)
    load_simulation(engine, settings, summary, since=config.start, batch=20_000)
    return Shop(settings, engine, pd.read_parquet(summary.truth_path), config.end)
