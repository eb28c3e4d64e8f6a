"""Recommender benchmark: training time and memory at scale, API latency under load, offline quality.

    python -m bench.recs                    # 1M users x 100k items x 20M interactions; API 20 s at 1,000 req/s
    python -m bench.recs --quick            # 100k x 20k x 2M; API 8 s
    python -m bench.recs --parts quality    # the quality table only (also: python -m bench.recs_quality)

1. **train**: a synthetic log (:mod:`bench.recs_data`: power-law popularity, topics, sessions,
   repeats) generated straight into numpy and cached under ``bench/out/cache``; then, each in a
   fresh process so that its peak memory is its own: the interactions matrix alone (the floor),
   popularity, ALS, EASE (restricted to its ``max_items`` most reached items: the dense inverse of
   100k items would need 80 GB) and the champion pipeline the trainer ships.
2. **api**: a SQLite store of a smaller log (profiles, identities and ``Product Viewed`` events
   written straight into the tables), the champion trained and promoted on it by
   ``train_recommender``, ``cdp serve --workers 2``, and beside it the floor: a bare Starlette app
   returning precomputed popular items (``bench/recs_popular.py``) under the same uvicorn. Both get
   the same open-loop load: requests *scheduled* at a fixed rate (a request's latency counts from
   its scheduled moment, so a slow server can't slow the load down and hide its queue), random
   known users and some visitors the model doesn't know (anonymous: ``session`` or ``popular``).
3. **quality**: ``bench/recs_quality.py``, the selection table on two generated data sets of
   different shapes.

Output also goes to ``bench/out/recs-<timestamp>.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import uvloop

from bench.features_data import COLUMNS as EVENT_COLUMNS
from bench.ingest import OUT
from bench.load import collector_paused, percentile
from bench.profiles import _TABLES
from bench.recs_data import END, RecsShape, cached_log, item_ids
from bench.report import Report, peak_mb, run
from cdp.config import Settings
from cdp.demo.server import free_port, start_server
from cdp.setup import prepare_store

ROOT = Path(__file__).resolve().parent.parent
CACHE = OUT / "cache"
ADMIN_TOKEN = "bench-recs-admin-token-6b1f2c"
TRAIN_SHAPES = {"full": RecsShape(1_000_000, 100_000, 20_000_000), "quick": RecsShape(100_000, 20_000, 2_000_000)}
API_SHAPES = {"full": RecsShape(50_000, 5_000, 1_000_000, seed=5), "quick": RecsShape(10_000, 2_000, 200_000, seed=5)}
VISITORS = 0.1  # share of API requests for people the model doesn't know
HALF_LIFE_DAYS = 60.0


# -- 1. training ---------------------------------------------------------------------------------


def shipped_candidates() -> list:
    """One setting per family (what the selection typically picks): the trainer's families, without
    the search, so the API part trains in a minute; the blend and the re-ranker are built on them."""
    from models.recommend import (
        ALSRecommender, BPRRecommender, EASERecommender, ItemKNNRecommender, PopularityRecommender, SessionRecommender,
    )
    from models.recommend.evaluate import BASELINE, Candidate

    return [
        Candidate(BASELINE, PopularityRecommender, {"half_life_days": [7.0]}),
        Candidate("als", ALSRecommender, {"factors": [64]}),
        Candidate("bpr", BPRRecommender, {"factors": [64]}),
        Candidate("ease", EASERecommender, {"l2": [200.0]}),
        Candidate("item_knn", ItemKNNRecommender, {"weighting": ["bm25"], "k": [100]}),
        Candidate("session", SessionRecommender, {"steps": [3]}),
    ]


def champion():  # type: ignore[no-untyped-def]
    """The re-ranker over the families of :func:`shipped_candidates`, as the trainer builds it."""
    from models.recommend.evaluate import RETRIEVERS
    from models.recommend.rerank import RerankRecommender

    families = {c.name: c for c in shipped_candidates()}
    return RerankRecommender({name: families[name].build(**families[name].settings()[0]) for name in RETRIEVERS})


def bench_models() -> dict[str, Callable]:
    """What the training part times, by name; built lazily in the measuring process."""
    from models.recommend import ALSRecommender, EASERecommender, PopularityRecommender

    return {
        "popularity": lambda: PopularityRecommender(half_life_days=7.0),
        "als": lambda: ALSRecommender(factors=64, iterations=15),
        "ease": lambda: EASERecommender(l2=200.0),
        "champion": champion,
    }


def measure(name: str, shape: RecsShape) -> dict:
    """In a fresh process: build the interactions of ``shape`` and fit ``name`` on them (``data``: build only)."""
    from models.recommend import Interactions

    log = cached_log(shape, CACHE)
    started = time.perf_counter()
    rows = log.frame()
    del log
    data = Interactions.from_frame(rows, as_of=END, half_life_days=HALF_LIFE_DAYS, item_ids=item_ids(shape.items))
    del rows
    result = {"build_seconds": time.perf_counter() - started}
    if name != "data":
        model = bench_models()[name]()
        started = time.perf_counter()
        model.fit(data)
        result["fit_seconds"] = time.perf_counter() - started
        if name == "champion":  # the trainer also stores the lists of the most recently active profiles
            from models.recommend.serve import PRECOMPUTED_PROFILES, precompute

            started = time.perf_counter()
            precompute(model)
            result["precompute_seconds"] = time.perf_counter() - started
            result["precomputed"] = min(PRECOMPUTED_PROFILES, data.n_users)
        result["model"] = f"{type(model).__name__}({', '.join(f'{k}={v}' for k, v in _short_params(model).items())})"
    return {**result, "peak_mb": peak_mb()}


def _short_params(model: object) -> dict:
    params = model.get_params()  # type: ignore[attr-defined]
    return {k: (f"<{len(v)} models>" if isinstance(v, dict) else v) for k, v in params.items()}


def run_measure(name: str, shape: RecsShape) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.recs", "--measure", name, "--shape", json.dumps(shape.__dict__)],
                          cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def training(shape: RecsShape, log: Callable[[str], None]) -> None:
    started = time.perf_counter()
    cached_log(shape, CACHE)
    log(f"training on {shape.label} (log ready in {time.perf_counter() - started:.0f} s, cached in {CACHE})")
    floor = run_measure("data", shape)
    log(f"  interactions matrix alone: built in {floor['build_seconds']:.0f} s, peak {floor['peak_mb']:,.0f} MB")
    log(f"  {'model':<11} {'fit s':>8} {'top-50 s':>9} {'peak MB':>9} {'x floor MB':>10}  configuration")
    for name in bench_models():
        found = run_measure(name, shape)
        if "error" in found:
            log(f"  {name:<11} failed: {found['error']}")
            continue
        precomputed = f"{found['precompute_seconds']:>9.1f}" if "precompute_seconds" in found else f"{'':>9}"
        log(f"  {name:<11} {found['fit_seconds']:>8.1f} {precomputed} {found['peak_mb']:>9,.0f} "
            f"{found['peak_mb'] / floor['peak_mb']:>10.2f}  {found['model']}")
        if "precomputed" in found:
            log(f"  {'':<11} top-50 s: the best 50 unseen items of the {found['precomputed']:,} most recently active "
                f"profiles, stored at training (the others are scored on their first request)")


# -- 2. API latency ------------------------------------------------------------------------------


def build_api_store(home: Path, shape: RecsShape, train_until: datetime) -> tuple[list[str], list[str]]:
    """A SQLite store of ``shape``'s log as profiles with a user id and ``Product Viewed`` events; plus
    visitors (anonymous ids) whose few views all come after ``train_until``. Returns the identifiers
    (``user_id:...``) of the known users and (``anonymous_id:...``) of the visitors."""
    settings = Settings(home=home, database_url=None)
    prepare_store(settings).dispose()
    log = cached_log(shape, CACHE)
    rng = np.random.default_rng(shape.seed)
    visitors = max(1, int(shape.users * VISITORS))
    visitor_item = rng.integers(0, shape.items, visitors * 3)
    visitor_time = int(train_until.timestamp() * 1e6) + rng.integers(60_000_000, 3_600_000_000, visitors * 3)
    users = np.concatenate([log.user.astype(np.int64), shape.users + np.repeat(np.arange(visitors), 3)])
    items = np.concatenate([log.item, visitor_item])
    stamps = np.concatenate([log.timestamp, visitor_time])
    iso = np.datetime_as_string(stamps.astype("datetime64[us]"), unit="us")
    con = sqlite3.connect(home / "cdp.sqlite", isolation_level=None)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("BEGIN")
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    con.execute("INSERT INTO sources (id, name, write_key_hash, enabled, created_at) VALUES (1, 'bench', 'x', 1, ?)",
                (now,))
    (profiles, profile_columns), (identities, identity_columns) = _TABLES[0], _TABLES[1]
    people = shape.users + visitors
    con.executemany(f"INSERT INTO {profiles} ({', '.join(profile_columns)}) VALUES (?, 'users', ?, ?)",
                    [(p + 1, now, now) for p in range(people)])
    kinds = ["user_id"] * shape.users + ["anonymous_id"] * visitors
    con.executemany(f"INSERT INTO {identities} ({', '.join(identity_columns)}) VALUES ('users', ?, ?, ?, 1, ?, ?)",
                    [(kind, _identifier_value(kind, p), p + 1, now, now) for p, kind in enumerate(kinds)])
    sql = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
    for lo in range(0, len(users), 200_000):
        chunk = []
        for i in range(lo, min(lo + 200_000, len(users))):
            user, item, moment = int(users[i]), int(items[i]), iso[i].replace("T", " ")
            kind = kinds[user]
            payload = (f'{{"type":"track","event":"Product Viewed","messageId":"m{i}","{_camel(kind)}":'
                       f'"{_identifier_value(kind, user)}","timestamp":"{iso[i]}Z","properties":{{"product_id":'
                       f'"p{item:06d}","category":"c{item % 40}","brand":"b{item % 7}","price":{5 + item % 200}}}}}')
            chunk.append((1, f"m{i}", "track", "Product Viewed", _identifier_value(kind, user) if kind == "user_id" else None,
                          moment, moment, moment, payload, user + 1))
        con.executemany(sql, chunk)
    con.execute("COMMIT")
    con.execute("ANALYZE")
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    known = [f"user_id:{_identifier_value('user_id', p)}" for p in range(shape.users)]
    anonymous = [f"anonymous_id:{_identifier_value('anonymous_id', shape.users + v)}" for v in range(visitors)]
    return known, anonymous


def _identifier_value(kind: str, person: int) -> str:
    return f"u{person:07d}" if kind == "user_id" else f"anon-{person:07d}"


def _camel(kind: str) -> str:
    return "userId" if kind == "user_id" else "anonymousId"


def group_cpu_seconds(group: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group ``group``."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == group:  # fields after the name: state, ppid, pgrp, ... utime (11), stime (12)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Load:
    scheduled: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # of the 200 answers, from the scheduled moment
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    strategies: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    server_cpu_s: float = 0.0  # CPU the server's processes used meanwhile: robust on a busy machine

    def describe(self) -> str:
        answered = len(self.latencies_ms)
        return (f"{answered / self.elapsed_s:,.0f} answers/s of {self.scheduled:,} scheduled, "
                f"p50 {percentile(self.latencies_ms, 50):.1f} ms, p99 {percentile(self.latencies_ms, 99):.1f} ms, "
                f"max {max(self.latencies_ms, default=float('nan')):.0f} ms, errors {self.errors}, "
                f"server CPU {self.server_cpu_s / max(answered, 1) * 1000:.2f} ms per answer")


async def open_loop(base_url: str, paths: list[str], *, rate: float, seconds: float, token: str) -> Load:
    """GET ``paths`` (cycled) at ``rate`` per second for ``seconds``, each at its scheduled moment."""
    result = Load(scheduled=int(rate * seconds))
    # perf_counter, not loop.time(): uvloop's clock counts whole milliseconds, cached per loop turn.
    clock = time.perf_counter
    connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=60)
    headers = {"authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url, connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(path: str, due: float) -> None:
            try:
                async with session.get(path) as answer:
                    body = await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status, body = None, repr(exc).encode()
            if status != 200:
                result.errors += 1
                if len(result.error_samples) < 3:
                    result.error_samples.append(f"{status}: {body[:160].decode(errors='replace')}")
                return
            result.latencies_ms.append((clock() - due) * 1000)
            strategy = body[body.rfind(b'"strategy":"') + 12:].split(b'"', 1)[0].decode()
            result.strategies[strategy] = result.strategies.get(strategy, 0) + 1

        with collector_paused():
            start = clock() + 0.05
            tasks = []
            for i in range(result.scheduled):
                due = start + i / rate
                if (wait := due - clock()) > 0:
                    await asyncio.sleep(wait)
                tasks.append(asyncio.create_task(one(paths[i % len(paths)], due)))
            await asyncio.gather(*tasks)
            result.elapsed_s = clock() - start
    return result


def start_floor(home: Path, popular: list[dict], workers: int) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {**os.environ, "CDP_BENCH_POPULAR": orjson.dumps(popular).decode(), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.recs_popular:create_app", "--factory", "--port", str(port),
         "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
         "--no-access-log"],
        cwd=ROOT, env=env, stdout=(home / "floor.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            import httpx

            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url, process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the floor server did not start; see {home / 'floor.log'}")


def api(shape: RecsShape, args: argparse.Namespace, log: Callable[[str], None]) -> None:
    from models.recommend.train import train_recommender

    home = OUT / "runs" / f"{os.getpid()}-recs-api"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    train_until = END - timedelta(hours=1)
    started = time.perf_counter()
    known, anonymous = build_api_store(home, shape, train_until)
    settings = Settings(home=home, database_url=None)
    engine = prepare_store(settings)
    log(f"api on {shape.label} (+{len(anonymous):,} anonymous visitors): store built in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    trained = train_recommender(engine, settings, as_of=train_until, candidates=shipped_candidates())
    engine.dispose()
    log(f"  champion {trained.selection.name!r} trained in {time.perf_counter() - started:.0f} s, "
        f"{'promoted' if trained.promoted else 'NOT promoted'} v{trained.model_version}")
    popular = [{"item_id": str(i), "score": 1.0} for i in trained.bundle.popularity.item_ids_[
        np.argsort(-trained.bundle.popularity.popularity_)[:10]]]
    rng = random.Random(7)
    paths = [f"/v1/recommendations/{rng.choice(anonymous) if rng.random() < VISITORS else rng.choice(known)}?limit=10"
             for _ in range(int(args.rate * (args.seconds + args.warmup)) + 1)]
    server = start_server(settings, workers=args.workers, log=home / "serve.log", admin_token=ADMIN_TOKEN)
    floor_url, floor = start_floor(home, popular, args.workers)
    results = {}
    try:
        for label, url, group in (("cdp serve", server.url, server.process.pid), ("floor", floor_url, floor.pid)):
            # The client on uvloop, as the servers are: on asyncio's own loop it took so much of the two
            # cores at 1,000 req/s that its delays, not the servers', made most of the p99 (4.2 s vs 0.6 s).
            uvloop.run(open_loop(url, paths, rate=args.rate, seconds=args.warmup, token=ADMIN_TOKEN))
            cpu = group_cpu_seconds(group)
            results[label] = uvloop.run(open_loop(url, paths[::-1], rate=args.rate, seconds=args.seconds,
                                                   token=ADMIN_TOKEN))
            results[label].server_cpu_s = group_cpu_seconds(group) - cpu
            log(f"  {label:<10} {results[label].describe()}")
            for sample in results[label].error_samples:
                log(f"    error: {sample}")
    finally:
        server.stop()
        os.killpg(floor.pid, 15)
        floor.wait(30)
        shutil.rmtree(home, ignore_errors=True)
    ours, base = results["cdp serve"], results["floor"]
    p50, p99 = (percentile(ours.latencies_ms, q) / percentile(base.latencies_ms, q) for q in (50, 99))
    cpu = (ours.server_cpu_s / max(len(ours.latencies_ms), 1)) / (base.server_cpu_s / max(len(base.latencies_ms), 1))
    log(f"  strategies served: {dict(sorted(ours.strategies.items()))}")
    log(f"  ours / floor: p50 x{p50:.1f}, p99 x{p99:.1f}, server CPU per answer x{cpu:.1f}; goal p99 < 20 ms at {args.rate:,.0f} req/s: "
        f"{'met' if percentile(ours.latencies_ms, 99) < 20 and not ours.errors else 'MISSED'}")


# -- 3. quality ----------------------------------------------------------------------------------


def quality(log: Callable[[str], None]) -> None:
    from bench.recs_quality import DATASETS, quality_table, render

    for name in DATASETS:
        started = time.perf_counter()
        table, chosen = quality_table(name)
        log(f"quality on {name} ({time.perf_counter() - started:.0f} s):")
        for line in render(table, chosen).splitlines():
            log(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    parser.add_argument("--parts", default="train,api,quality", help="comma-separated: train, api, quality")
    parser.add_argument("--rate", type=float, default=1000.0, help="API requests per second (open loop)")
    parser.add_argument("--seconds", type=float, help="measured seconds per server [20; 8 with --quick]")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, RecsShape(**json.loads(args.shape)))))
        return
    size = "quick" if args.quick else "full"
    args.seconds = args.seconds or (8.0 if args.quick else 20.0)
    report = Report("recs")
    log = report.say
    log(f"{report.machine()}, {size} sizes; a shared machine makes every figure noisy")
    parts = {p.strip() for p in args.parts.split(",")}
    if "train" in parts:
        training(TRAIN_SHAPES[size], log)
    if "api" in parts:
        api(API_SHAPES[size], args, log)
    if "quality" in parts:
        quality(log)
    report.write()


if __name__ == "__main__":
    run(main)
