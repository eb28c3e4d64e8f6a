"""Models benchmark: training and scoring time and peak memory at 100k and 1M profiles, and the quality table.

    python -m bench.models                        # 100k and 1M profiles (the first run simulates the shop, ~10 min)
    python -m bench.models --quick                # 100k only
    python -m bench.models --base-profiles 2000   # a smaller simulated shop to resample from (faster first run)

Data: a shop of ``--base-profiles`` profiles simulated by :mod:`cdp.demo.simulate` (planted signal:
latent purchase rates, dropout, spend levels) and ingested into a SQLite store through the real
ingestion (tests/models_data.py); its training frames for churn, purchase and LTV (30 days, five
monthly cutoffs, imported history counted from when it happened) are cached in bench/out/models/.
Each size is drawn from them by resampling whole profiles with replacement (every cutoff's row of
a profile, under a new id): the rows have the shop's joint distribution, but hold only
``--base-profiles`` distinct customers -- fine for time and memory, not for quality (copies of a
profile on both sides of the single-cutoff GBM's random validation split would flatter it).

Each measurement runs in a fresh subprocess (peak memory = VmHWM of that process alone):

1. **quality**, on the shop's own frames (distinct profiles): ``evaluate``, the model and the
   baselines (recency, repeat rate, BTYD, tuned single-cutoff GBM) fitted on the earlier cutoffs
   and compared on the latest, as ``cdp predictions train`` reports it;
2. per size and task, **train**: what ``cdp predictions train`` refits in production,
   ``make_model(task).fit`` on every cutoff (BTYD features, LightGBM, calibration or the total's
   scale on the latest cutoff); **score**: ``score_frame`` on the latest cutoff (probability or
   value, percentile, decile, reasons).

Results go to stdout and bench/out/models-<timestamp>.txt. LightGBM runs on one thread (models.boosting).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report import OUT, ROOT, Report, peak_mb

TASKS = ("churn", "purchase", "value")
HEADLINE = {"churn": ("roc_auc", "log_loss", "ece"), "purchase": ("roc_auc", "log_loss", "ece"),
            "value": ("normalized_gini", "aggregate_error", "top_decile_share")}
FULL, QUICK = (100_000, 1_000_000), (100_000,)


def main() -> None:
    args = parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.profiles, frames_dir(args.base_profiles, args.seed))))
        return
    report = Report("models")
    say = report.say
    say(report.machine())
    built = build_frames(args.base_profiles, args.seed)
    if built:
        say(f"simulated and featurized a shop of {args.base_profiles:,} profiles (seed {args.seed}): {built:.0f} s")
    for task in TASKS:
        say()
        say(quality_table(run_measurement(task, 0, args)))
    say()
    results = []
    for profiles in QUICK if args.quick else FULL:
        for task in TASKS:
            result = run_measurement(task, profiles, args)
            results.append(result)
            say(f"{task:<9} {profiles:>9,} profiles: train {result['train_seconds']:7.1f} s, score "
                f"{result['score_seconds']:6.1f} s, peak {result['peak_mb']:6.0f} MB (data {result['data_mb']:.0f} MB)")
    say()
    say(timing_table(results))
    report.write()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k profiles only")
    parser.add_argument("--base-profiles", type=int, default=10_000, help="profiles of the simulated shop resampled from")
    parser.add_argument("--seed", type=int, default=11, help="the simulator's seed")
    parser.add_argument("--measure", choices=TASKS, help=argparse.SUPPRESS)
    parser.add_argument("--profiles", type=int, help=argparse.SUPPRESS)  # 0: the quality of the shop itself
    return parser.parse_args()


# -- data ------------------------------------------------------------------------------------------


def frames_dir(base_profiles: int, seed: int) -> Path:
    return OUT / "models" / f"shop-p{base_profiles}-s{seed}"


def build_frames(base_profiles: int, seed: int) -> float | None:
    """Simulate, ingest and featurize the base shop once; ``None`` when its frames are cached already."""
    from features import ChurnLabel, GoalLabel, ValueLabel, build_training_frame
    from tests.models_data import CONFIG, HORIZON, simulated_shop

    folder = frames_dir(base_profiles, seed)
    if (folder / "complete").exists():
        return None
    started = time.perf_counter()
    shop = simulated_shop(replace(CONFIG, profiles=base_profiles, seed=seed))
    folder.mkdir(parents=True, exist_ok=True)
    labels = {"churn": ChurnLabel(), "purchase": GoalLabel(event="Order Completed"), "value": ValueLabel()}
    for task, label in labels.items():
        frame = build_training_frame(shop.engine, cutoffs=shop.cutoffs(5), horizon=HORIZON, label=label,
                                     backfilled_until=shop.settings.backfilled_until)
        frame.to_parquet(folder / f"{task}.parquet")
    (folder / "complete").touch()
    return time.perf_counter() - started


def resampled(frame: pd.DataFrame, profiles: int, seed: int = 0) -> pd.DataFrame:
    """``profiles`` profiles drawn with replacement from ``frame``'s, each with all its rows, under new ids 0..n-1."""
    ordered = frame.sort_values(["profile_id", "cutoff"], kind="stable").reset_index(drop=True)
    _, starts, counts = np.unique(ordered["profile_id"].to_numpy(), return_index=True, return_counts=True)
    drawn = np.random.default_rng(seed).integers(len(starts), size=profiles)
    lengths = counts[drawn]
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = ordered.iloc[np.repeat(starts[drawn], lengths) + within]
    out = rows.assign(profile_id=np.repeat(np.arange(profiles, dtype="int64"), lengths))
    return out.sort_values(["cutoff", "profile_id"], kind="stable").reset_index(drop=True)


# -- measurements (each in its own process) ---------------------------------------------------------


def run_measurement(task: str, profiles: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "bench.models", "--measure", task, "--profiles", str(profiles),
               "--base-profiles", str(args.base_profiles), "--seed", str(args.seed)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement {task} at {profiles:,} profiles failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(task: str, profiles: int, folder: Path) -> dict:
    """Quality of the shop's frame (``profiles`` 0), or train and score times of a resampled one."""
    from models.boosting import feature_frame, latest_cutoff
    from models.evaluate import evaluate, make_model
    from models.score import score_frame

    frame = pd.read_parquet(folder / f"{task}.parquet")
    if not profiles:
        started = time.perf_counter()
        metrics = evaluate(frame, task=task, horizon_days=30.0).metrics
        return {"task": task, "rows": len(frame), "held_out": int(metrics.at["n", "model"]),
                "seconds": time.perf_counter() - started, "metrics": metrics.to_dict(orient="index")}
    frame = resampled(frame, profiles)
    data_mb = peak_mb()
    started = time.perf_counter()
    model = make_model(task, 30.0).fit(feature_frame(frame), frame["label"], frame["cutoff"])
    train_seconds = time.perf_counter() - started
    latest = frame[latest_cutoff(frame["cutoff"])].drop(columns="label")
    started = time.perf_counter()
    score_frame(model, latest, task=task)
    return {"task": task, "profiles": profiles, "rows": len(frame), "scored": len(latest), "data_mb": data_mb,
            "train_seconds": train_seconds, "score_seconds": time.perf_counter() - started, "peak_mb": peak_mb()}


# -- report ----------------------------------------------------------------------------------------


def timing_table(results: list[dict]) -> str:
    lines = [f"{'task':<9} {'profiles':>10} {'rows':>10} {'scored':>9} {'train s':>8} {'score s':>8} "
             f"{'scored/s':>10} {'peak MB':>8} {'data MB':>8}"]
    for r in results:
        lines.append(f"{r['task']:<9} {r['profiles']:>10,} {r['rows']:>10,} {r['scored']:>9,} {r['train_seconds']:>8.1f} "
                     f"{r['score_seconds']:>8.1f} {r['scored'] / r['score_seconds']:>10,.0f} {r['peak_mb']:>8.0f} "
                     f"{r['data_mb']:>8.0f}")
    lines.append("train: production fit on all 5 cutoffs; score: latest cutoff with reasons; peak MB: VmHWM of the "
                 "measuring process; data MB: VmHWM once the resampled frame is built (before training)")
    return "\n".join(lines)


def quality_table(result: dict) -> str:
    table = pd.DataFrame(result["metrics"]).T.loc[list(HEADLINE[result["task"]])]
    # Ratios of the model's figure to a baseline's (an aggregate error has none: a ratio of two biases says nothing).
    ratios = {f"model/{name}": (table["model"] / table[name]).where(table.index != "aggregate_error")
              for name in ("recency", "btyd", "single_cutoff_gbm")}
    return (f"quality, {result['task']}: {result['rows']:,} rows, {result['held_out']:,} held out (latest cutoff); "
            f"model and every baseline fitted in {result['seconds']:.0f} s\n"
            + table.assign(**ratios).to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
