"""Offline quality of every recommender on two generated data sets of different shapes.

    python -m bench.recs_quality                 # both data sets (~10 min on two cores)
    python -m bench.recs_quality --dataset shop

Each data set goes through :func:`models.recommend.evaluate.select_recommender` exactly as
``cdp recs train`` runs it: temporal leave-last-out test split; every family (ALS and EASE
included) tuned on a validation split carved from the training rows only; the blend and the
re-ranker tuned there too; then every row reported on the test split. The last lines compare the
row the selection chose with the best of the tuned ALS and EASE (the quality bar: NDCG@10 at least
10 % above, hit rate not below).

* ``shop``: the demo's simulated shop (:mod:`cdp.demo.simulate`: 2,000 customers over 120 days,
  500 items; taste by category, brand loyalty, price level, staples that come back), ingested into
  a scratch store and read back with :func:`features.interactions.read_interactions` and its
  catalog (category, brand, price).
* ``sessions``: :mod:`bench.recs_data` (20,000 users x 5,000 items x 400,000 interactions:
  power-law popularity, latent topics, sessions that keep to a topic, 10 % repeats), with no
  catalog at all.

Rows are cached under ``bench/out/cache``.
"""

from __future__ import annotations

import argparse
import shutil
import time

import pandas as pd

from bench.ingest import OUT
from bench.recs_data import RecsShape, cached_log

CACHE = OUT / "cache"
SHOWN = ("validation_ndcg@10", "ndcg@10", "hr@10", "coverage@10", "popularity@10", "fit_seconds")
DATASETS = ("shop", "sessions")
SESSIONS = RecsShape(20_000, 5_000, 400_000, seed=11)


def shop_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo shop's interactions and catalog, built once through the real ingestion."""
    rows_path, catalog_path = CACHE / "quality-shop-rows.parquet", CACHE / "quality-shop-catalog.parquet"
    if not rows_path.exists():
        from cdp.config import Settings
        from cdp.demo.load import load_simulation
        from cdp.demo.simulate import SimulationConfig, generate
        from cdp.setup import prepare_store
        from features.interactions import read_catalog, read_interactions

        home = CACHE / "quality-shop-store"
        shutil.rmtree(home, ignore_errors=True)
        settings = Settings(home=home, database_url=None, sqlite_synchronous="OFF")
        engine = prepare_store(settings)
        config = SimulationConfig(profiles=2000, days=120, seed=7, items=500)
        load_simulation(engine, settings, generate(home / "simulation", config), since=config.start)
        read_catalog(engine, as_of=config.end).to_parquet(catalog_path)
        read_interactions(engine, as_of=config.end).to_parquet(rows_path)
        engine.dispose()
        shutil.rmtree(home, ignore_errors=True)
    return pd.read_parquet(rows_path), pd.read_parquet(catalog_path)


def dataset(name: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    if name == "shop":
        return shop_rows()
    if name == "sessions":
        return cached_log(SESSIONS, CACHE).frame(), None
    raise ValueError(f"unknown data set {name!r}; use one of {', '.join(DATASETS)}")


def quality_table(name: str) -> tuple[pd.DataFrame, str]:
    """The selection table of data set ``name`` and the chosen row."""
    from models.recommend.evaluate import select_recommender

    rows, catalog = dataset(name)
    selection = select_recommender(rows, catalog=catalog)
    return selection.table, selection.name


def render(table: pd.DataFrame, chosen: str) -> str:
    shown = table[list(SHOWN)].copy()
    text = shown.to_string(float_format=lambda v: f"{v:.4f}")
    bar = table.loc[[name for name in ("als", "ease") if name in table.index]]
    best = bar["ndcg@10"].idxmax()
    ndcg, hr = table.loc[chosen, "ndcg@10"], table.loc[chosen, "hr@10"]
    lines = [
        text,
        f"chosen by validation: {chosen}; best tuned of ALS / EASE on test: {best}",
        f"NDCG@10 {ndcg:.4f} vs {bar.loc[best, 'ndcg@10']:.4f}: {ndcg / bar.loc[best, 'ndcg@10'] - 1:+.1%} "
        f"(bar: +10%); HR@10 {hr:.4f} vs {bar['hr@10'].max():.4f} (bar: not below); "
        f"coverage@10 {table.loc[chosen, 'coverage@10']:.3f} vs {bar.loc[best, 'coverage@10']:.3f}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, action="append", help="repeatable [default: all]")
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    for name in args.dataset or DATASETS:
        started = time.perf_counter()
        table, chosen = quality_table(name)
        print(f"quality on {name} ({time.perf_counter() - started:.0f} s)")
        print(render(table, chosen), flush=True)


if __name__ == "__main__":
    main()
