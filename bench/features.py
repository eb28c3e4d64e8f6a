"""Features benchmark: ``features.load`` against a plain pandas groupby, on SQLite and PostgreSQL.

    python -m bench.features                    # 100k profiles x 10 events and 1M x 50 (first run builds the stores)
    python -m bench.features --quick            # 20k x 10 and 20k x 50
    python -m bench.features --keep --stores postgresql

For each store and size: fill a store (bench/features_data.py; kept with ``--keep`` and reused
by later runs), then in a fresh subprocess per measurement, so that peak memory belongs to that
measurement alone:

1. **sql**: ``features.load(engine, as_of=cutoff)``, the default feature set pushed down;
2. **pandas**: the reference (``features.reference``): export the events, then a plain pandas
   groupby computing the same columns; export and groupby timed apart.

Both answers are compared (same profiles, same values). Results go to stdout and to
bench/out/features-<timestamp>.txt. Needs PostgreSQL at ``--pg`` unless ``--stores sqlite``.
The 1M x 50 stores take 32 GB (PostgreSQL) and ~25 GB (SQLite) of disk; ``--sqlite-max-events``
skips the SQLite sizes above it (single-threaded, SQLite needs minutes for 50M events).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bench.features_data import END, Shape, fill_postgres, fill_sqlite
from bench.report import OUT, ROOT, Report, peak_mb
from cdp.config import Settings
from cdp.setup import prepare_store
from cdp.store.db import create_store_engine
from cdp.store.tables import sources

STORES = OUT / "features"
CUTOFF = END - timedelta(days=30)
FULL = (Shape(100_000, 10), Shape(1_000_000, 50))
QUICK = (Shape(20_000, 10), Shape(20_000, 50))


def main() -> None:
    args = parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.url)))
        return
    report = Report("features")
    say = report.say
    say(f"{report.machine()}; cutoff {CUTOFF:%Y-%m-%d}")
    results = []
    for store in args.stores.split(","):
        for shape in QUICK if args.quick else FULL:
            if store == "sqlite" and args.sqlite_max_events is not None and shape.events > args.sqlite_max_events:
                say(f"skip sqlite {shape.label}: {shape.events:,} events is over --sqlite-max-events")
                continue
            url, built = open_store(store, shape, args.pg)
            if built:
                say(f"built {store} {shape.label}: {built:.0f} s")
            sql = run_measurement("sql", url)
            reference = run_measurement("pandas", url)
            results.append((store, shape, sql, reference))
            say(f"{store:<10} {shape.label:<10} sql {sql['seconds']:7.1f} s {sql['peak_mb']:7.0f} MB | pandas export "
                f"{reference['export_seconds']:6.1f} s + groupby {reference['seconds']:6.1f} s {reference['peak_mb']:7.0f} MB"
                f" | {sql['rows']:,} profiles, {sql['columns']} columns, agree: {reference['agree']}")
            if not args.keep:
                drop_store(store, shape, args.pg)
    say()
    say(table(results))
    report.write()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20k profiles instead of 100k and 1M")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server; a database per size is created on it")
    parser.add_argument("--keep", action="store_true", help="keep the stores for the next run")
    parser.add_argument("--sqlite-max-events", type=int, help="skip SQLite sizes with more events (default: none)")
    parser.add_argument("--measure", choices=("sql", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser.parse_args()


# -- stores -------------------------------------------------------------------------------------


def _database(shape: Shape) -> str:
    return f"cdp_bench_features_{shape.profiles}x{shape.events_per_profile}_s{shape.seed}"


def open_store(store: str, shape: Shape, pg: str) -> tuple[str, float | None]:
    """The store's URL, filled (reused when a previous ``--keep`` run left it complete)."""
    started = time.perf_counter()
    if store == "sqlite":
        path = STORES / f"{_database(shape)}.sqlite"
        url = f"sqlite:///{path}"
        if path.exists():
            return url, None
        STORES.mkdir(parents=True, exist_ok=True)
        building = path.with_suffix(".building")
        for leftover in STORES.glob(building.name + "*"):
            leftover.unlink()
        source_id = _prepare(f"sqlite:///{building}")
        fill_sqlite(str(building), shape, source_id=source_id)
        os.replace(building, path)
        return url, time.perf_counter() - started
    name = _database(shape)
    url = make_url(pg).set(database=name).render_as_string(hide_password=False)
    admin = _libpq(pg)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            with psycopg.connect(_libpq(url)) as db:
                if db.execute("SELECT obj_description('events'::regclass)").fetchone()[0] == "complete":
                    return url, None
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    source_id = _prepare(url)
    fill_postgres(_libpq(url), shape, source_id=source_id)
    with psycopg.connect(_libpq(url), autocommit=True) as db:
        db.execute("COMMENT ON TABLE events IS 'complete'")  # a half-built store is rebuilt, never reused
    return url, time.perf_counter() - started


def drop_store(store: str, shape: Shape, pg: str) -> None:
    if store == "sqlite":
        for path in STORES.glob(f"{_database(shape)}.sqlite*"):
            path.unlink()
        return
    with psycopg.connect(_libpq(pg), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_database(shape)}" WITH (FORCE)')


def _prepare(url: str) -> int:
    engine = prepare_store(Settings(home=STORES, database_url=url, write_keys="bench-features"))
    with engine.connect() as conn:
        source_id = conn.execute(select(sources.c.id)).scalar_one()
    engine.dispose()
    return source_id


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# -- measurements (each in its own process) -------------------------------------------------------


def run_measurement(what: str, url: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.features", "--measure", what, "--url", url],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"measurement {what} on {url} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(what: str, url: str) -> dict:
    import features
    from features.definitions import resolve
    from features.read import export
    from features.reference import reference_features

    engine = create_store_engine(Settings(home=STORES, database_url=url), pool=False)
    baseline = peak_mb()
    started = time.perf_counter()
    if what == "sql":
        frame = features.load(engine, as_of=CUTOFF)
        seconds = time.perf_counter() - started
        frame.to_parquet(_answer_path(url))
        return {"seconds": seconds, "peak_mb": peak_mb(), "baseline_mb": baseline, "rows": len(frame),
                "columns": frame.shape[1]}
    exported = export(engine)
    export_seconds = time.perf_counter() - started
    started = time.perf_counter()
    frame = reference_features(exported, as_of=CUTOFF, features=resolve("default"))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "export_seconds": export_seconds, "peak_mb": peak_mb(), "baseline_mb": baseline,
            "rows": len(frame), "events": len(exported.events), "agree": _agree(frame, pd.read_parquet(_answer_path(url)))}


def _answer_path(url: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT / f"features-answer-{hashlib.sha256(url.encode()).hexdigest()[:12]}.parquet"


def _agree(reference: pd.DataFrame, sql: pd.DataFrame) -> str:
    if not reference.index.equals(sql.index) or sorted(reference.columns) != sorted(sql.columns):
        return "no (different profiles or columns)"
    worst = [c for c in sql.columns
             if not np.allclose(sql[c].astype(float), reference[c].astype(float), rtol=1e-9, atol=1e-6, equal_nan=True)]
    return "yes" if not worst else f"no ({', '.join(worst)})"


def table(results: list[tuple[str, Shape, dict, dict]]) -> str:
    lines = [f"{'store':<13} {'size':<10} {'events':>11} {'sql s':>8} {'sql MB':>8} {'export s':>9} {'groupby s':>10} "
             f"{'pandas MB':>10} {'pandas/sql time':>16} {'pandas/sql MB':>14}"]
    for store, shape, sql, ref in results:
        pandas_total = ref["export_seconds"] + ref["seconds"]
        lines.append(
            f"{store:<13} {shape.label:<10} {shape.events:>11,} {sql['seconds']:>8.1f} {sql['peak_mb']:>8.0f} "
            f"{ref['export_seconds']:>9.1f} {ref['seconds']:>10.1f} {ref['peak_mb']:>10.0f} "
            f"{pandas_total / sql['seconds']:>15.1f}x {ref['peak_mb'] / sql['peak_mb']:>13.1f}x"
        )
    lines.append("sql: features.load (default set, SQL pushed down) end to end; pandas: export of the events "
                 "+ plain groupby (reference.py); MB: peak RSS (VmHWM) of the measuring process")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
