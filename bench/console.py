"""Console benchmark: how long each ``/ui`` page takes on a store of N profiles, beside ``GET /health``.

    python -m bench.console             # 1M profiles (the bench-profiles store), 30 requests per page
    python -m bench.console --quick     # 100k profiles
    python -m bench.console --postgres  # PostgreSQL instead of SQLite (both: --stores sqlite,postgresql)

The store: N people (3 identifiers and 6 traits each, see bench.profiles), the four ``plan_*``
audiences of bench.audiences computed over them (about a quarter of the people each), a webhook
destination, a journey, and two predictions (definitions only: no model is trained, so the model card
and the score histogram are empty). Then ``cdp serve --workers 2``, a console user signed in through
the sign-in form, and for each page ``--requests`` GETs one after another (after two warm-up GETs);
p50 / p99 of the time to the whole answer, over loopback. The baseline, measured in the same run on
the same server: ``GET /health``. The issue's goal is under 300 ms per page. Also timed: the API call
the audience page makes from the browser after it is shown (its overlap with the other audiences).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from datetime import UTC, datetime

import httpx

from bench.audiences import AUDIENCES
from bench.load import percentile
from bench.profiles import fill_people, scratch_store
from bench.report import Report
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
from cdp.setup import prepare_store
from cdp.store.db import write_transaction

EMAIL, PASSWORD = "bench-marketer@example.com", "bench-marketer-password"
GOAL_MS = 300
PAGES = ("/ui", "/ui/audiences", "/ui/audiences/plan_pro", "/ui/audiences/new", "/ui/profiles",
         "/ui/profiles?id=user-0000042", "/ui/predictions", "/ui/predictions/churn", "/ui/journeys",
         "/ui/journeys/cart_recovery", "/ui/journeys/new", "/ui/recommendations", "/ui/destinations",
         "/ui/destinations/1", "/ui/governance",
         "/v1/audiences/plan_pro/overlap")  # the audience page's overlap, fetched by the browser once it is shown


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
    report.say(f"{report.machine()}, SQLite {sqlite3.sqlite_version}")
    for store in [s.strip() for s in stores.split(",") if s.strip()]:
        console_pages(store, args, report.say)
    report.write()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
