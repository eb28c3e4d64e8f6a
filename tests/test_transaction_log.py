"""A transaction log (orders only, the data of every classic LTV study) through the CLI, as a data
scientist backtests on one: ``import --backfill``, create, train as of the log's end, score, export.

Two things used to stop this at once: the imported history counted only from the day of the
import (so no past cutoff saw anyone), and one kind of event failed the readiness report.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdp.config import Settings
from tests.test_cli import cdp

pytestmark = pytest.mark.slow
START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 420


def write_transaction_log(path: Path, customers: int = 1500, seed: int = 11) -> None:
    """Buyers acquired over the first 120 days, each with a purchase rate that fades with age (no
    sudden dropout, unlike BG/NBD) and a spend level; one CSV row per order. A model reading the
    last weeks' activity beside the whole history sees the fading that BTYD's model has no term for."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["customer_id", "ordered_at", "amount"])
        for customer in range(customers):
            rate, fading, spend = rng.gamma(0.8, 1 / 15), rng.uniform(40.0, 400.0), rng.gamma(4.0, 10.0)
            first = day = rng.uniform(0, 120)
            while day < DAYS:
                when = START + timedelta(days=float(day))
                out.writerow([f"c{customer:05d}", when.isoformat(), round(float(rng.gamma(6.0, spend / 6.0)), 2)])
                day += rng.exponential(1 / (rate * np.exp(-(day - first) / fading)))


def test_a_transaction_log_trains_and_scores_through_the_cli(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=None)
    log = tmp_path / "orders.csv"
    write_transaction_log(log)
    # Returns as orders of negative revenue, a few days after the order (as UCI's Online Retail has them).
    orders = pd.read_csv(log)
    returns = orders.sample(frac=0.05, random_state=1).assign(
        amount=lambda o: -o["amount"], ordered_at=lambda o: (pd.to_datetime(o["ordered_at"]) + pd.Timedelta(days=3))
        .map(lambda t: t.isoformat()))
    pd.concat([orders, returns]).to_csv(log, index=False)
    assert cdp(settings, "init").returncode == 0
    imported = cdp(settings, "import", str(log), "--backfill", "--event", "Order Completed", "--map", "userId=customer_id",
                   "--map", "timestamp=ordered_at", "--map", "properties.revenue=amount")
    assert imported.returncode == 0 and "0 quarantined" in imported.stdout, imported.stdout + imported.stderr
    # The whole customer base, as LTV studies score it: 0 lifts the default "active in the last 90 days".
    # Scored by the BTYD fallback should the gate refuse the model: this test is about the path, not the margin.
    created = cdp(settings, "predictions", "create", "ltv", "--kind", "ltv", "--window-days", "30",
                  "--active-within-days", "0", "--fallback", "heuristic")
    assert created.returncode == 0, created.stderr

    as_of = (START + timedelta(days=DAYS)).isoformat()
    trained = cdp(settings, "predictions", "train", "ltv", "--as-of", as_of)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "warning: only 1 kinds of events" in trained.stdout
    card = trained.stdout[trained.stdout.index("normalized_gini"):].splitlines()[0].split()
    gini = dict(zip(["model", "recency", "repeat_rate", "btyd", "single_cutoff_gbm"], map(float, card[1:]), strict=True))
    assert gini["model"] > 0.3 and gini["btyd"] > 0.3, trained.stdout  # both read the purchase histories
    assert "gate: " in trained.stdout

    scored = cdp(settings, "predictions", "score", "ltv", "--as-of", as_of)
    assert scored.returncode == 0, scored.stderr
    out = tmp_path / "ltv.csv"
    assert cdp(settings, "predictions", "export", "ltv", "--out", str(out)).returncode == 0
    scores = pd.read_csv(out)
    assert len(scores) == pd.read_csv(log)["customer_id"].nunique()  # everyone bought before the end of the log
    assert (scores["ltv_value"] >= 0).all() and scores["ltv_decile"].between(1, 10).all()
