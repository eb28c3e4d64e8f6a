"""Console benchmark: how long each ``/ui`` page takes on a store of N profiles, beside ``GET /health``.

    python -m bench.console             # 1M profiles (the bench-profiles store), 30 requests per page
    python -m bench.console --quick     # 100k profiles
    python -m bench.console --postgres  # PostgreSQL instead of SQLite (both: --stores sqlite,postgresql)

The store: N people (3 identifiers and 6 traits each, see bench.profiles), the four ``plan_*``
audiences of bench.audiences computed over them (about a quarter of the people each), a webhook
destination, a journey, and two predictions. ``churn`` has a champion in MLflow with held-out metrics
beside two baselines and a scoring of every person 35 days ago (so its window has passed and the card
computes realized outcomes by decile): the six predicted traits per person that a scoring writes, in
the current traits and the trait log, written straight into the tables as the people are. Then ``cdp serve --workers 2``, a console user signed in through
the sign-in form, and for each page ``--requests`` GETs one after another (after two warm-up GETs);
p50 / p99 of the time to the whole answer, over loopback. The baseline, measured in the same run on
the same server: ``GET /health``. The issue's goal is under 300 ms per page. Also timed: the API call
the audience page makes from the browser after it is shown (its overlap with the other audiences).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psycopg
from sklearn.linear_model import LogisticRegression

from bench.audiences import AUDIENCES
from bench.load import percentile
from bench.profiles import fill_people, scratch_store
from bench.report import Report, run
from cdp.audiences.membership import recompute
from cdp.audiences.schemas import parse_audience
from cdp.audiences.service import save_audience
from cdp.auth.users import create_user
from cdp.config import Settings
from cdp.demo.server import start_server
from cdp.destinations.addresses import Allowlist
from cdp.destinations.schemas import parse_destination
from cdp.destinations.service import create_destination
from cdp.journeys.schemas import parse_journey
from cdp.journeys.service import save_journey
from cdp.predictions.schemas import PredictionDefinition
from cdp.predictions.service import create_prediction
from cdp.predictions.traits import PREDICTED, trait_names
from cdp.setup import prepare_store
from cdp.store.db import write_transaction
from models.predict import record_outcomes
from models.tracking import log_scoring, track_training

EMAIL, PASSWORD = "bench-marketer@example.com", "bench-marketer-password"
SCORED_DAYS_AGO = 35  # the churn scoring: its 30-day window has passed
CHUNK = 50_000
GOAL_MS = 300
PAGES = ("/ui", "/ui/audiences", "/ui/audiences/plan_pro", "/ui/audiences/new", "/ui/profiles",
         "/ui/profiles?id=user-0000042", "/ui/predictions", "/ui/predictions/churn", "/ui/journeys",
         "/ui/journeys/cart_recovery", "/ui/journeys/new", "/ui/recommendations", "/ui/destinations",
         "/ui/destinations/1", "/ui/governance",
         "/v1/audiences/plan_pro/overlap",  # the audience page's overlap, fetched by the browser once it is shown
         # the model card page's two API calls (its realized outcomes are the ones recorded: timed once, above)
         "/v1/predictions/churn", "/v1/predictions/churn/scores")


def fill(home, database_url, count: int, log) -> None:  # type: ignore[no-untyped-def]
    fill_people(home, database_url, count, log=log)
    engine = prepare_store(Settings(home=home, database_url=database_url))
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            create_user(conn, email=EMAIL, role="marketer", password=PASSWORD, now=now)
            for key, condition in AUDIENCES[:4]:
                save_audience(conn, definition=parse_audience({"key": key, "condition": condition}), now=now)
            destination = create_destination(conn, spec=parse_destination(
                {"name": "bench", "url": "http://127.0.0.1:9/hook"}), allowlist=Allowlist.parse("127.0.0.1"), now=now)
            save_journey(conn, definition=parse_journey({
                "key": "cart_recovery", "entry": {"event": "Product Added"}, "holdout": 0.1,
                "goal": {"event": "Order Completed", "within": {"days": 3}},
                "steps": [{"id": "wait", "type": "wait_for_event", "event": "Checkout Started", "timeout": {"hours": 1},
                           "timed_out": [{"id": "send", "type": "send", "destination": destination.id}]}]}), now=now)
            for key in ("churn", "ltv"):
                create_prediction(conn, definition=PredictionDefinition(key=key, kind=key, window_days=30), now=now)
        started = time.perf_counter()
        changes = write_transaction(engine, lambda conn: recompute(conn, as_of=now, deliver=False))
        log(f"4 audiences computed in {time.perf_counter() - started:.0f} s: "
            f"{sum(c.size or 0 for c in changes):,} memberships")
    finally:
        engine.dispose()
    started = time.perf_counter()
    write_scores(home, database_url, count, as_of=now - timedelta(days=SCORED_DAYS_AGO), now=now)
    settings = Settings(home=home, database_url=database_url)
    champion(settings.resolved_mlflow_tracking_uri, count, as_of=now - timedelta(days=SCORED_DAYS_AGO))
    log(f"churn scores of {count:,} people and its champion's card written in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    engine = prepare_store(settings)
    try:
        record_outcomes(engine, "churn", settings=settings, now=now)  # as the scoring flow does, for the card
    finally:
        engine.dispose()
    log(f"realized outcomes of the {count:,} scores computed and recorded in {time.perf_counter() - started:.0f} s")


def score_rows(count: int, *, as_of: datetime, now: datetime) -> Iterator[list[tuple]]:
    """Chunks of rows (profile_id, name, value as JSON text, class, event_time, received_at): the six
    traits a churn scoring writes per person (cdp.predictions.traits), scores drawn at random."""
    scores = np.random.default_rng(7).beta(2, 5, count)
    ranks = np.empty(count, dtype=np.int64)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(count)  # 0 = highest risk
    rng = random.Random(7)
    names = trait_names("churn", "churn")
    stamp, when, received = (as_of.isoformat(), as_of.replace(tzinfo=None).isoformat(" ", "microseconds"),
                             now.replace(tzinfo=None).isoformat(" ", "microseconds"))
    for start in range(0, count, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, count)):
            percentile = round(1 - ranks[i] / count, 4)
            values = (f"{scores[i]:.6f}", str(percentile), str(int(ranks[i] * 10 // count) + 1),
                      f'["no order in {rng.randrange(20, 200)} days"]', '"1"', f'"{stamp}"')
            rows.extend((i + 1, name, value, PREDICTED, when, received) for name, value in zip(names, values))
        yield rows


def write_scores(home: Path, database_url: str | None, count: int, *, as_of: datetime, now: datetime) -> None:
    """The scores in the current traits and in the trait log (their history), as a scoring leaves them."""
    current = "INSERT INTO profile_traits (profile_id, name, value, class, event_time, received_at) "
    logged = "INSERT INTO trait_changes (profile_id, name, value, class, event_time, received_at) "
    if database_url is None:
        conn = sqlite3.connect(home / "cdp.sqlite")
        for rows in score_rows(count, as_of=as_of, now=now):
            for statement in (current, logged):
                conn.executemany(statement + "VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.commit()
        conn.execute("ANALYZE")
        conn.close()
        return
    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as conn:
        for rows in score_rows(count, as_of=as_of, now=now):
            for statement in (current, logged):
                with conn.cursor().copy(statement.replace("INSERT INTO", "COPY") + "FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE profile_traits")
        conn.execute("VACUUM ANALYZE trait_changes")


def champion(tracking_uri: str, count: int, *, as_of: datetime) -> None:
    """A registered churn model promoted by the gate, with held-out metrics beside the baselines, and the
    scoring's run (how many profiles): what the model card shows. The model itself is a stand-in."""
    rng = np.random.default_rng(3)
    example = pd.DataFrame({"recency_days": rng.integers(0, 365, 200), "orders_90d": rng.integers(0, 6, 200)})
    model = LogisticRegression().fit(example, (example["recency_days"] > 120).astype(int))
    metrics = pd.DataFrame({"model": [0.81, 0.42, 0.16, 3.1], "repeat_rate": [0.66, 0.27, 0.19, 1.8],
                            "btyd": [0.72, 0.31, 0.18, 2.2]},
                           index=["roc_auc", "pr_auc", "brier", "lift_at_10"])
    segments = pd.DataFrame(columns=["roc_auc"], index=pd.MultiIndex.from_tuples([], names=["predictor", "segment"]))
    track_training(tracking_uri=tracking_uri, key="churn", task="churn", params={"window_days": 30},
                   metrics=metrics, segments=segments, figures={}, training_set={"rows": count}, model=model,
                   input_example=example.head(5))
    log_scoring(tracking_uri=tracking_uri, key="churn", model_version="1", as_of=as_of, profiles=count, drift=None)


def signed_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=120)
    form = client.get("/ui/sign-in").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/ui/sign-in", data={"csrf": csrf, "email": EMAIL, "password": PASSWORD, "next": "/ui"})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: {answer.status_code}")
    return client


def timed(client: httpx.Client, path: str, requests: int) -> tuple[list[float], int]:
    """Milliseconds per GET (after two warm-up GETs), and the status of the last answer."""
    status = 0
    for _ in range(2):
        status = client.get(path).status_code
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        status = client.get(path).status_code
        times.append((time.perf_counter() - started) * 1000)
    return times, status


def console_pages(store: str, args: argparse.Namespace, log) -> None:  # type: ignore[no-untyped-def]
    with scratch_store(store, "console", args) as (home, database_url):
        fill(home, database_url, args.profiles, log=lambda line: log(f"  {store}: {line}"))
        server = start_server(Settings(home=home, database_url=database_url), workers=2, log=home / "server.log")
        try:
            client = signed_in(server.url)
            card = client.get("/ui/predictions/churn").text
            if "Predicted beside realized rate" not in card or "roc_auc" not in card:
                raise SystemExit("the churn model card lacks its metrics or its realized outcomes")
            health, _ = timed(client, "/health", args.requests)
            log(f"  {store}, {args.profiles:,} profiles, {args.requests} GETs each (ms):")
            log(f"    {'page':34} {'p50':>7} {'p99':>7} {'p50/health':>11}  status")
            base = percentile(health, 50)
            log(f"    {'/health (baseline)':34} {base:7.1f} {percentile(health, 99):7.1f} {1:10.1f}x")
            slow = []
            for path in PAGES:
                times, status = timed(client, path, args.requests)
                p50, p99 = percentile(times, 50), percentile(times, 99)
                if p99 > GOAL_MS:
                    slow.append(path)
                log(f"    {path:34} {p50:7.1f} {p99:7.1f} {p50 / base:10.1f}x  {status}")
            log(f"    pages over {GOAL_MS} ms at p99: {', '.join(slow) or 'none'}")
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k profiles")
    parser.add_argument("--profiles", type=int, help="people in the store [1M; 100k with --quick]")
    parser.add_argument("--requests", type=int, default=30, help="timed GETs per page")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--stores", help="comma-separated: sqlite, postgresql [sqlite]")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    args.profiles = args.profiles or (100_000 if args.quick else 1_000_000)
    stores = args.stores or ("postgresql" if args.postgres else "sqlite")
    report = Report("console")
    report.say(report.machine())
    for store in [s.strip() for s in stores.split(",") if s.strip()]:
        console_pages(store, args, report.say)
    report.write()


if __name__ == "__main__":
    run(main)
