"""Backtest LTV and purchase on a transaction log of your own, through the CLI, beside the classical baselines.

    python -m bench.backtest orders.csv --customer customer_id --time ordered_at --revenue amount \\
        --split 2024-06-30 --window-days 90
    python -m bench.backtest CDNOW_master.txt --format cdnow --split 1997-09-30 --window-days 90 --holdout-days 273

The classic LTV study (and its purchase twin): everything up to ``--split`` is the calibration period, the
``--holdout-days`` after it the holdout; each customer's revenue in the holdout is the truth.
(CDNOW's log, the field's reference, ships with the ``lifetimes`` package:
``pip download --no-deps lifetimes`` and unzip ``lifetimes/datasets/CDNOW_master.txt``.)

1. A fresh store under a temporary ``CDP_HOME``: ``cdp init``, then the log through
   ``cdp import --backfill``, every row an ``Order Completed`` with its revenue.
2. ``cdp predictions create ltv --kind ltv --window-days W --active-within-days 0
   --no-gate-baselines`` (every customer, as LTV studies score them; the model is backtested
   whatever the baselines scored on its card, where a user's gate would have compared them),
   ``train --as-of SPLIT`` (its model card: the model's own out-of-time evaluation, all before the
   split), ``score --as-of SPLIT``, ``export``.
3. Beside it, fitted on the calibration period only: BTYD (BG/NBD + Gamma-Gamma on each
   customer's history at the split, predicting the holdout itself), a tuned single-cutoff
   LightGBM (features at ``SPLIT - W``, revenue in the ``W`` days after: one calibration period,
   one target period, the usual ML study) and recency alone.
4. Normalized Gini, Spearman and top-decile share of the holdout's revenue per predictor, and the
   aggregate error. The model and the GBM predict ``W`` days; for a longer holdout their values
   are scaled by ``holdout / W`` (linear in time, which a decaying customer base is not: read
   the aggregate error of a longer holdout with that in mind; the rankings are unaffected).

Output also goes to ``bench/out/backtest-<timestamp>.txt``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select

from bench.report import Report, run

ORDER = "Order Completed"
KINDS = ("ltv", "purchase")


def main() -> None:
    args = parse_args()
    report = Report("backtest")
    say = report.say
    say(report.machine())
    split = datetime.fromisoformat(args.split)
    split = split if split.tzinfo else split.replace(tzinfo=UTC)
    holdout_days = args.holdout_days or args.window_days
    with tempfile.TemporaryDirectory(prefix="cdp-backtest-") as scratch:
        home = Path(args.keep or scratch)
        home.mkdir(parents=True, exist_ok=True)
        orders = read_log(args)
        say(f"{args.log.name}: {len(orders):,} orders of {orders['customer'].nunique():,} customers, "
            f"{orders['time'].min():%Y-%m-%d} to {orders['time'].max():%Y-%m-%d}; split {split:%Y-%m-%d}, "
            f"window {args.window_days} days, LTV holdout {holdout_days} days")
        env = {**os.environ, "CDP_HOME": str(home / "home"), "COLUMNS": "200"}
        env.pop("CDP_DATABASE_URL", None)
        env.pop("CDP_BACKFILLED_UNTIL", None)
        csv_path = home / "orders.csv"
        orders.assign(time=orders["time"].map(lambda t: t.isoformat())).to_csv(csv_path, index=False)
        cli(env, say, "init", quiet=True)
        cli(env, say, "import", str(csv_path), "--backfill", "--event", ORDER, "--map", "userId=customer",
            "--map", "timestamp=time", "--map", "properties.revenue=revenue")
        exported = {}
        for kind in KINDS:
            cli(env, say, "predictions", "create", kind, "--kind", kind, "--window-days", str(args.window_days),
                "--active-within-days", "0", "--no-gate-baselines", quiet=True)
            cli(env, say, "predictions", "train", kind, "--as-of", split.isoformat())
            cli(env, say, "predictions", "score", kind, "--as-of", split.isoformat())
            cli(env, say, "predictions", "export", kind, "--out", str(home / f"{kind}.csv"), quiet=True)
            exported[kind] = pd.read_csv(home / f"{kind}.csv")
        tables = compare(home / "home", orders, exported, split, args.window_days, holdout_days)
    for kind, (days, table) in tables.items():
        scaled = (f"; model and single-cutoff GBM scaled by holdout / window = {days / args.window_days:.3f}"
                  if days != args.window_days else "")
        say(f"\n{kind} on the holdout ({split:%Y-%m-%d}, {split + timedelta(days=days):%Y-%m-%d}]: every customer "
            f"who bought by the split{scaled}")
        say(table.to_string(float_format=lambda v: f"{v:.4f}"))
    report.write()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="LTV and purchase backtest on a transaction log, through the CLI, "
                                                 "beside BTYD and a tuned single-cutoff GBM.")
    parser.add_argument("log", type=Path, help="CSV of orders, or CDNOW_master.txt with --format cdnow")
    parser.add_argument("--format", choices=("csv", "cdnow"), default="csv")
    parser.add_argument("--customer", default="customer_id", help="CSV column of the customer id")
    parser.add_argument("--time", default="ordered_at", help="CSV column of the order time (ISO 8601)")
    parser.add_argument("--revenue", default="revenue", help="CSV column of the order's revenue")
    parser.add_argument("--split", required=True, help="end of the calibration period (ISO date or time; UTC unless it says)")
    parser.add_argument("--window-days", type=int, default=90, help="the prediction's window")
    parser.add_argument("--holdout-days", type=int, help="length of the holdout [default: the window]")
    parser.add_argument("--keep", help="a new folder to keep the store, MLflow runs and export in [default: removed after]")
    args = parser.parse_args()
    if not args.log.is_file():
        parser.error(f"no such file: {args.log}")
    if args.keep and Path(args.keep).exists():
        parser.error(f"--keep {args.keep}: already exists; give a new folder")
    return args


def read_log(args: argparse.Namespace) -> pd.DataFrame:
    """Columns ``customer`` (str), ``time`` (UTC), ``revenue`` (float), one row per order."""
    if args.format == "cdnow":  # customer, yyyymmdd, number of CDs, dollars; whitespace-separated
        raw = pd.read_csv(args.log, sep=r"\s+", header=None, names=["customer", "day", "cds", "revenue"],
                          dtype={"customer": str, "day": str})
        raw = raw[raw["day"].str.isdigit()]  # lifetimes' copy starts with a header line
        # A day, no time: noon keeps every order inside its own day whatever the time zone.
        time = pd.to_datetime(raw["day"], format="%Y%m%d", utc=True) + pd.Timedelta(hours=12)
        return pd.DataFrame({"customer": raw["customer"], "time": time, "revenue": raw["revenue"].astype(float)})
    raw = pd.read_csv(args.log, dtype={args.customer: str})
    return pd.DataFrame({"customer": raw[args.customer], "time": pd.to_datetime(raw[args.time], utc=True),
                         "revenue": raw[args.revenue].astype(float)})


def cli(env: dict[str, str], say: Callable[[str], None], *args: str, quiet: bool = False) -> None:
    done = subprocess.run([sys.executable, "-m", "cdp", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cdp {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    if not quiet:
        say(f"\n$ cdp {' '.join(args[:3])} ...")
        for line in done.stdout.rstrip().splitlines():
            say(line)


def compare(home: Path, orders: pd.DataFrame, exported: dict[str, pd.DataFrame], split: datetime, window_days: int,
            holdout_days: int) -> dict[str, tuple[int, pd.DataFrame]]:
    """Per kind, the holdout's length and its table: one column per predictor, fitted up to the split only."""
    from cdp.config import Settings
    from cdp.setup import prepare_store
    from cdp.store.tables import events
    from features import GoalLabel, ValueLabel, build_scoring_frame, build_training_frame
    from models.baselines import BtydBaseline, RecencyBaseline, SingleCutoffGbm
    from models.boosting import feature_frame
    from models.metrics import classification_metrics, value_metrics

    engine = prepare_store(Settings(home=home, database_url=None))
    with engine.connect() as conn:
        customer_of = dict(conn.execute(select(events.c.profile_id, events.c.user_id).distinct()).all())
    window = timedelta(days=window_days)
    at_split = build_scoring_frame(engine, as_of=split, eligibility=())
    labels = {"ltv": ValueLabel(), "purchase": GoalLabel(event=ORDER)}
    before = {kind: build_training_frame(engine, cutoffs=[split - window], horizon=window, label=label, eligibility=())
              for kind, label in labels.items()}
    engine.dispose()
    X = feature_frame(at_split)
    customers = at_split["profile_id"].map(customer_of)
    tables = {}
    for kind, task in (("ltv", "value"), ("purchase", "purchase")):
        days = holdout_days if kind == "ltv" else window_days  # a probability is of its own window
        scale = days / window_days
        X_before, y_before = feature_frame(before[kind]), before[kind]["label"]
        column = f"{kind}_value" if kind == "ltv" else f"{kind}_probability"
        model = at_split["profile_id"].map(exported[kind].set_index("profile_id")[column]).to_numpy(float)
        if np.isnan(model).any():
            raise SystemExit(f"the {kind} export lacks some customers who bought by the split")
        predictions = {
            "model": model * scale,
            "btyd": BtydBaseline(task, days).fit(X).predict(X),
            "single_cutoff_gbm": SingleCutoffGbm(task, window_days).fit(
                X_before, y_before, before[kind]["cutoff"]).predict(X) * scale,
            "recency": RecencyBaseline(task).fit(X_before, y_before).predict(X) * scale,
        }
        holdout = orders[(orders["time"] > split) & (orders["time"] <= split + timedelta(days=days))]
        revenue = customers.map(holdout.groupby("customer")["revenue"].sum()).fillna(0.0).to_numpy(float)
        rows = {}
        for name, predicted in predictions.items():
            if kind == "ltv":
                v = value_metrics(revenue, predicted)
                rows[name] = {"customers": len(revenue), "mean_actual": revenue.mean(), "mean_predicted": predicted.mean(),
                              "normalized_gini": v.normalized_gini, "spearman": v.spearman,
                              "top_decile_share": v.top_decile_share, "aggregate_error": v.aggregate_error}
            else:
                bought = (revenue > 0) | customers.isin(holdout["customer"]).to_numpy()
                c = classification_metrics(bought.astype(int), predicted)
                rows[name] = {"customers": len(bought), "positive_rate": bought.mean(), "roc_auc": c.roc_auc,
                              "pr_auc": c.pr_auc, "log_loss": c.log_loss, "brier": c.brier, "ece": c.ece}
        tables[kind] = (days, pd.DataFrame(rows))
    return tables


if __name__ == "__main__":
    run(main)
