"""A retail-shaped transaction log to backtest on, beside CDNOW's (bench.backtest).

    python -m bench.retail_log orders.csv [--seed 1] [--customers 4000]
    python -m bench.backtest orders.csv --customer CustomerID --time InvoiceDate --revenue Revenue \\
        --split 2011-09-09 --window-days 90 --holdout-days 91

CDNOW is one cohort, all acquired in its first quarter; this log is shaped like an online
retailer's year (2010-12-01 to 2011-12-09), the shape of the other public logs of the field:

- customers acquired all year round;
- 70 % buy as BG/NBD assumes (Poisson purchases at a gamma-distributed rate, a beta-distributed
  chance to stop after each), 30 % are trade buyers ordering on a cycle (gamma-distributed gaps,
  far more regular than Poisson), spending about four times as much;
- orders of a log-normal value around each customer's level, 1.5x in October and November;
- each order split over 1 to 11 lines (rows of the same time), 3 % followed by a return (a row of
  negative revenue 1 to 10 days later), and 2 % of rows without a customer id.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

START, END = pd.Timestamp("2010-12-01", tz="UTC"), pd.Timestamp("2011-12-09", tz="UTC")
FIRST_ID = 12346


def retail_log(customers: int, seed: int) -> pd.DataFrame:
    """Columns ``CustomerID`` (text, empty when unknown), ``InvoiceDate``, ``Revenue``; one row per line."""
    rng = np.random.default_rng(seed)
    span = (END - START).days
    rows: list[tuple[str, pd.Timestamp, float]] = []
    for number in range(customers):
        customer = str(FIRST_ID + number)
        trade = rng.random() < 0.3
        mean_gap = rng.gamma(2.0, 25.0) if trade else rng.gamma(0.8, 80.0)
        stop = rng.beta(1.0, 6.0)
        level = rng.lognormal(np.log(250.0 if trade else 60.0), 0.8)
        day = rng.uniform(0, span - 1)
        while day < span:
            when = START + pd.Timedelta(days=day)
            value = level * rng.lognormal(0.0, 0.5) * (1.5 if when.month in (10, 11) else 1.0)
            lines = rng.dirichlet(np.ones(rng.integers(1, 12))) * value
            rows.extend((customer, when, round(line, 2)) for line in lines)
            if rng.random() < 0.03:
                rows.append((customer, when + pd.Timedelta(days=rng.uniform(1, 10)), -round(lines[0], 2)))
            if rng.random() < stop:
                break
            day += max(rng.gamma(3.0, mean_gap / 3.0) if trade else rng.exponential(mean_gap), 0.5)
    log = pd.DataFrame(rows, columns=["CustomerID", "InvoiceDate", "Revenue"])
    log = log[log["InvoiceDate"] <= END].sort_values("InvoiceDate", kind="stable")
    log.loc[rng.random(len(log)) < 0.02, "CustomerID"] = ""
    return log.assign(InvoiceDate=log["InvoiceDate"].dt.strftime("%Y-%m-%d %H:%M"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the CSV to write")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=4000)
    args = parser.parse_args()
    log = retail_log(args.customers, args.seed)
    log.to_csv(args.out, index=False)
    print(f"{args.out}: {len(log):,} rows, {log['CustomerID'].replace('', None).nunique():,} customers")


if __name__ == "__main__":
    main()
