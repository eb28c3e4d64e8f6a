"""Print the offline comparison of the recommenders on the store's interactions.

``python -m models.recommend [--k 10] [--n-last 1]`` reads the store of ``CDP_HOME`` /
``CDP_DATABASE_URL`` as of now, runs :func:`models.recommend.evaluate.select_recommender` and
prints its table (test metrics, the popularity baseline among them). Until ``cdp recs evaluate``
exists, this is how to see it.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import pandas as pd

from cdp.config import get_settings
from cdp.store.db import create_store_engine
from features.interactions import read_interactions
from models.recommend.evaluate import select_recommender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10, help="cut-off of the metrics")
    parser.add_argument("--n-last", type=int, default=1, help="items held out per user")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = read_interactions(create_store_engine(get_settings()), as_of=datetime.now(UTC))
    read_seconds = time.perf_counter() - started
    selection = select_recommender(rows, k=args.k, n_last=args.n_last)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 90):
        print(selection.table.round(4).to_string())
    print(f"\n{len(rows):,} interactions, {rows['profile_id'].nunique():,} profiles, {rows['item_id'].nunique():,} items; "
          f"read in {read_seconds:.1f} s, search and evaluation in {time.perf_counter() - started - read_seconds:.1f} s")
    print(f"chosen by validation NDCG@{args.k}: {selection.name}")


if __name__ == "__main__":
    main()
