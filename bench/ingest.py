"""Ingestion benchmark: ``cdp serve`` against the ceiling server, on SQLite and PostgreSQL, empty and big.

    python -m bench.ingest            # 10M preloaded events, 20 s runs (~15 min, first run builds caches)
    python -m bench.ingest --quick    # 200k preloaded events, 8 s runs (smoke check)

For each store and size: start ours (``cdp serve --workers 2``) on a fresh store, warm up, load it,
stop it and check that every acknowledged messageId is stored exactly once; then the same load on
the ceiling server (bench/ceiling.py) over a store of the same size. Results go to stdout and to
bench/out/ingest-<timestamp>.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import uvloop
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.load import BATCH_SIZE, LoadResult, make_bodies, run_load
from bench.preload import copy_sqlite, fill_postgres, fill_sqlite, prepare_empty, sqlite_cache_path
from bench.report import run
from cdp.auth.service import source_for_write_key
from cdp.config import Settings
from cdp.events.attribution import count_pending
from cdp.store.db import any_row, create_store_engine, reader
from cdp.store.tables import EVENT_PENDING, events

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
WRITE_KEY = "bench-write-key-7f3a9c2e51d04b8e"  # fixed: cached preloaded stores hold its source
WORKERS = 2
VERIFY_CHUNK = 5000
# Environment the servers must not inherit from whoever runs the bench: the bench decides these.
OWNED_ENV = ("CDP_HOME", "CDP_DATABASE_URL", "CDP_WRITE_KEYS", "CDP_ADMIN_TOKEN", "CDP_SERVE_WORKERS")

_running: list[subprocess.Popen] = []


@dataclass
class Target:
    """One store a server runs on."""

    server: str  # "ours" | "ceiling"
    home: Path
    database_url: str
    preloaded: int


@dataclass
class Outcome:
    store: str
    size: str
    server: str
    result: LoadResult
    cpu: dict[str, float]
    note: str = ""
    attribution: Attribution | None = None  # ours only


@dataclass
class Attribution:
    """How far identity resolution (behind the API, see cdp.events.attribution) lagged the load."""

    backlog: int  # events stored but not yet attributed when the load stopped
    drain_s: float  # from then until none was left

    def per_s(self, result: LoadResult) -> float:
        """Events acknowledged in the measured run per second until all of them were attributed."""
        return result.events / (result.elapsed_s + self.drain_s)


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _exit_on_signal)  # so that `finally` stops the servers on kill too
    started = datetime.now(UTC)
    OUT.mkdir(parents=True, exist_ok=True)
    report: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    for line in machine_lines(args, started):
        log(line)
    # Sized for the fastest server we expect; runs stop early (and say so) if it is not enough.
    count = int((args.warmup + args.seconds) * args.max_rate / BATCH_SIZE)
    built = time.perf_counter()
    bodies = make_bodies(count, write_key=WRITE_KEY)
    log(f"load: {len(bodies):,} pre-built bodies of {BATCH_SIZE} messages, "
        f"{sum(len(b.data) for b in bodies) / len(bodies) / BATCH_SIZE:.0f} bytes/message "
        f"(built in {time.perf_counter() - built:.0f} s); {args.concurrency} keep-alive clients, "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s measured per run")
    sizes = [0, args.preload] if args.sizes == "both" else [0] if args.sizes == "empty" else [args.preload]
    outcomes: list[Outcome] = []
    failed = False
    try:
        for store in args.stores:
            for size in sizes:
                label = "empty" if size == 0 else human(size)
                with prepared_stores(store, size, args, log) as targets:
                    for target in targets:
                        result, cpu, note, attribution = run_one(target, bodies, args, log)
                        outcomes.append(Outcome(store, label, target.server, result, cpu, note, attribution))
                        log(f"  {store} {label} {target.server}: {summary(result)}")
                        if attribution is not None:
                            log(f"    attribution: {attribution.backlog:,} events pending when the load stopped, "
                                f"drained in {attribution.drain_s:.1f} s: {attribution.per_s(result):,.0f} events/s "
                                "acknowledged and attributed")
                        log("    CPUs busy: " + ", ".join(f"{role} {value:.2f}" for role, value in cpu.items()))
                        if target.server == "ours":
                            verdict = verify(target, result.acknowledged_ids)
                            failed = failed or not verdict.startswith("verify OK")
                            log("    " + verdict)
    finally:
        stop_all()
    log()
    for line in table(outcomes):
        log(line)
    notes = sorted({o.note for o in outcomes if o.note})
    for note in notes:
        log(f"note: {note}")
    path = OUT / f"ingest-{started.strftime('%Y%m%dT%H%M%SZ')}.txt"
    path.write_text("\n".join(report) + "\n")
    print(f"written to {path.relative_to(ROOT)}")
    if failed:
        sys.exit("some acknowledged messages were not stored exactly once: see the verify lines")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200k preloaded events, 8 s runs")
    parser.add_argument("--preload", type=int, help="events in the big store [10M; 200k with --quick]")
    parser.add_argument("--seconds", type=float, help="measured seconds per run [20; 8 with --quick]")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--stores", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--sizes", choices=("both", "empty", "big"), default="both",
                        help="empty store, preloaded store, or both")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server (any database): a fresh database is created per run")
    parser.add_argument("--sqlite-cache-mb", type=int, help="CDP_SQLITE_CACHE_MB for both servers")
    parser.add_argument("--quiet-wait", type=float,
                        help="seconds to wait, before each run, for other work on the machine to stop [60; 10 with --quick]")
    parser.add_argument("--max-rate", type=float, default=45_000,
                        help="events/s the pre-built bodies must last for at most")
    args = parser.parse_args()
    args.preload = args.preload if args.preload is not None else (200_000 if args.quick else 10_000_000)
    args.seconds = args.seconds if args.seconds is not None else (8.0 if args.quick else 20.0)
    args.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (10.0 if args.quick else 60.0)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(args.stores) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    return args


def machine_lines(args: argparse.Namespace, started: datetime) -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    pg_version = "?"
    if "postgresql" in args.stores:
        with psycopg.connect(args.pg) as conn:
            pg_version = conn.execute("SHOW server_version").fetchone()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return [
        f"ingest benchmark {started.isoformat(timespec='seconds')} (commit {commit.stdout.strip() or '?'})",
        f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, PostgreSQL {pg_version}",
        f"servers: {WORKERS} workers each, client and servers on the same machine (loopback)",
    ]


def human(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000}k"
    return f"{count:,}"


# --- stores -------------------------------------------------------------------------------------


@contextmanager
def prepared_stores(store: str, size: int, args: argparse.Namespace, log) -> Iterator[list[Target]]:  # type: ignore[no-untyped-def]
    """A store for ours and one for the ceiling, each holding ``size`` rows; removed afterwards.

    Both are filled before either server runs, in parallel (a fill is half Python, half database
    work), so that no preload work overlaps a measured run.
    """
    started = time.perf_counter()
    with ExitStack() as cleanup:
        targets = []
        for server in ("ours", "ceiling"):
            home = OUT / "runs" / f"{os.getpid()}-{store}-{size}-{server}"  # CDP_HOME, server.log
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            cleanup.callback(shutil.rmtree, home, ignore_errors=True)
            if store == "sqlite":
                url = f"sqlite:///{home / 'cdp.sqlite'}"
            else:
                database = f"cdp_bench_{os.getpid()}_{size}_{server}"
                create_database(args.pg, database)
                cleanup.callback(drop_database, args.pg, database)
                url = to_sqlalchemy_url(psycopg.conninfo.make_conninfo(args.pg, dbname=database))
            targets.append(Target(server, home, url, size))
        if store == "sqlite" and size:
            for target, cached in zip(targets, sqlite_caches(targets, size, log), strict=True):
                copy_sqlite(cached, target.home / "cdp.sqlite")
        else:
            source_ids = [prepare_empty(settings_for(target), target.server) for target in targets]
            if size:
                jobs = [(t.database_url, t.server, source_id) for t, source_id in zip(targets, source_ids, strict=True)]
                parallel(lambda stop: fill_postgres(jobs, size, stop), [()])  # one job: for the Ctrl-C stop
            if store == "postgresql":
                with psycopg.connect(args.pg, autocommit=True) as conn:
                    # Flush the preload's dirty pages now, not in a checkpoint during a measured run.
                    conn.execute("CHECKPOINT")
        if size:
            log(f"  {store} {human(size)}: stores ready in {time.perf_counter() - started:.0f} s")
        yield targets


def sqlite_caches(targets: list[Target], size: int, log) -> list[Path]:  # type: ignore[no-untyped-def]
    """Cached SQLite files of ``size`` rows for the targets' servers, built (in parallel) if missing."""
    cache_dir = OUT / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = [sqlite_cache_path(cache_dir, target.server, size) for target in targets]
    missing = []
    for target, path in zip(targets, paths, strict=True):
        if not path.exists():
            building = path.with_suffix(".building")
            for leftover in cache_dir.glob(building.name + "*"):
                leftover.unlink()  # an interrupted build
            settings = Settings(home=cache_dir, database_url=f"sqlite:///{building}", write_keys=WRITE_KEY)
            missing.append((target.server, building, prepare_empty(settings, target.server)))
    if missing:
        started = time.perf_counter()
        parallel(lambda server, building, source_id, stop: fill_sqlite(building, server, size, source_id, stop),
                 missing)
        for server, building, _ in missing:
            path = sqlite_cache_path(cache_dir, server, size)
            os.replace(building, path)
            log(f"  built {path.relative_to(ROOT)} ({size:,} rows, {path.stat().st_size / 1e9:.1f} GB) "
                f"in {time.perf_counter() - started:.0f} s; later runs reuse it")
    return paths


def parallel(fill, jobs: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    """``fill(*job, stop)`` for every job in threads; on Ctrl-C they stop at their next chunk."""
    stop = threading.Event()
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(fill, *job, stop) for job in jobs]
        try:
            for future in futures:
                future.result()
        except BaseException:
            stop.set()
            raise


def settings_for(target: Target) -> Settings:
    return Settings(home=target.home, database_url=target.database_url, write_keys=WRITE_KEY)


def to_sqlalchemy_url(conninfo: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    return (f"postgresql+psycopg://{user}{password}@{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}"
            f"/{params['dbname']}")


def create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def verify(target: Target, acknowledged: list[str]) -> str:
    """Every acknowledged messageId is in ``events`` exactly once (read back in chunks by messageId)."""
    engine = create_store_engine(settings_for(target))
    try:
        with reader(engine).connect() as conn:
            source = source_for_write_key(conn, write_key=WRITE_KEY)
            stored: list[str] = []
            for at in range(0, len(acknowledged), VERIFY_CHUNK):
                chunk = acknowledged[at: at + VERIFY_CHUNK]
                stored += conn.execute(
                    select(events.c.message_id).where(events.c.source_id == source.id,
                                                      events.c.message_id.in_(chunk))
                ).scalars().all()
            total = conn.execute(select(func.count()).select_from(events)).scalar_one()
    finally:
        engine.dispose()
    unique = set(stored)
    sent_twice = len(acknowledged) - len(set(acknowledged))  # would be a load generator bug
    duplicates = len(stored) - len(unique)
    missing = len(set(acknowledged) - unique)
    ok = not (sent_twice or duplicates or missing)
    return (f"verify {'OK' if ok else 'FAILED'}: {len(acknowledged):,} acknowledged, {len(unique):,} found, "
            f"{missing:,} missing, {duplicates:,} stored twice; events table {total:,} rows "
            f"= {target.preloaded:,} preloaded + {total - target.preloaded:,}")


# --- servers ------------------------------------------------------------------------------------


def run_one(target: Target, bodies, args: argparse.Namespace, log) -> tuple[LoadResult, dict[str, float], str, Attribution | None]:  # type: ignore[no-untyped-def]
    """Start the server on ``target``, warm up, load (measured), wait for attribution (ours), stop.

    The warm-up's acknowledged ids are kept with the measured run's: verification covers both.
    """
    env = server_env(target, args)
    note = ""
    other = wait_for_quiet(args.quiet_wait)
    if other >= QUIET_CPUS:
        log(f"    the machine is busy: other work uses {other:.2f} CPUs (waited {args.quiet_wait:g} s)")
    process, port = start_server(target, env, fallback=False)
    try:
        if not wait_healthy(process, port) and target.server == "ours":
            # `cdp serve` migrates with create_store_engine(pool=False), which PostgreSQL rejects
            # (NullPool with pool_size); run what it would run next, so the API is measured anyway.
            stop(process)
            reason = last_error_line(target)
            log(f"    cdp serve did not start ({reason}); running serving.app:create_app under uvicorn "
                "with cdp serve's options instead")
            store = "postgresql" if target.database_url.startswith("postgresql") else "sqlite"
            note = f"ours on {store} started via uvicorn because `cdp serve` failed: {reason}"
            process, port = start_server(target, env, fallback=True)
            if not wait_healthy(process, port):
                raise RuntimeError(f"server did not start; see {target.home / 'server.log'}")
        elif process.poll() is not None:
            raise RuntimeError(f"server did not start; see {target.home / 'server.log'}")
        url = f"http://127.0.0.1:{port}"
        warmup = uvloop.run(run_load(url, bodies, write_key=WRITE_KEY, concurrency=args.concurrency,
                                      seconds=args.warmup))
        database = make_url(target.database_url).database if target.database_url.startswith("postgresql") else None
        before, started = cpu_snapshot(process.pid, database), time.perf_counter()
        result = uvloop.run(run_load(url, bodies[warmup.bodies_used:], write_key=WRITE_KEY,
                                      concurrency=args.concurrency, seconds=args.seconds))
        cpu = cpu_used(before, cpu_snapshot(process.pid, database), time.perf_counter() - started)
        attribution = wait_attributed(target) if target.server == "ours" else None
    finally:
        stop(process)
    result.acknowledged_ids = warmup.acknowledged_ids + result.acknowledged_ids
    result.errors += warmup.errors
    result.error_samples = warmup.error_samples + result.error_samples
    return result, cpu, note, attribution


def wait_attributed(target: Target, timeout_s: float = 600.0) -> Attribution:
    """Poll the store until the server has attributed every event it stored."""
    engine = create_store_engine(settings_for(target))
    started = time.perf_counter()
    try:
        with reader(engine).connect() as conn:
            backlog = count_pending(conn)
        # Then only whether any is left: counting a backlog of 400k rows costs PostgreSQL 150 ms,
        # every 0.2 s a large share of the CPU the servers drain it with; one row's lookup costs nothing.
        left = backlog > 0
        while left and time.perf_counter() - started < timeout_s:
            time.sleep(0.2)
            left = any_row(engine, events, EVENT_PENDING)
    finally:
        engine.dispose()
    if left:
        raise RuntimeError(f"events still unattributed after {timeout_s:.0f} s")
    return Attribution(backlog, time.perf_counter() - started)


# --- CPU accounting -----------------------------------------------------------------------------
# Client, servers and database share two cores, and other work on the machine skews every number:
# each run reports who used the CPUs during the measured window, so a noisy run is visible.

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
QUIET_CPUS = 0.15
SHARED_POSTGRES = ("walwriter", "checkpointer", "background writer")


def cpu_snapshot(server_pid: int, database: str | None = None) -> dict:
    """CPU seconds used so far by the machine and by each process, tagged with its role.

    PostgreSQL counts as the run's when it is a backend on ``database`` or (on PostgreSQL runs) a
    shared background process; other sessions' backends are "other".
    """
    fields = _read("/proc/stat").split("\n", 1)[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    processes = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read(entry / "stat")
        if ")" not in stat:
            continue  # exited meanwhile
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        pid, session = int(entry.name), int(rest[3])
        role = ("servers" if session == server_pid else "client" if pid == os.getpid()
                else _postgres_role(entry, database) if comm == "postgres" else "other")
        processes[pid] = (role, (int(rest[11]) + int(rest[12])) / CLOCK_TICKS)
    return {"machine": (user + nice + system + irq + softirq + steal) / CLOCK_TICKS, "processes": processes}


def _postgres_role(entry: Path, database: str | None) -> str:
    # Backends read "postgres: 15/main: user database host(port) state"; the WAL writer,
    # checkpointer and background writer serve every database, so a PostgreSQL run owns them.
    command = _read(entry / "cmdline").replace("\0", " ")
    if database and (f" {database} " in command or command.rstrip().endswith(SHARED_POSTGRES)):
        return "postgres"
    return "other"


def wait_for_quiet(max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other work leaves the CPUs alone; the last load seen."""
    deadline = time.monotonic() + max_wait
    while True:
        before = cpu_snapshot(server_pid=-1)
        time.sleep(1.0)
        other = cpu_used(before, cpu_snapshot(server_pid=-1), 1.0)["other"]
        if other < QUIET_CPUS or time.monotonic() >= deadline:
            return other
        time.sleep(2.0)


def cpu_used(before: dict, after: dict, seconds: float) -> dict[str, float]:
    """Average CPUs busy per role between two snapshots ("other": the rest of the machine)."""
    used = {"servers": 0.0, "client": 0.0, "postgres": 0.0}
    for pid, (role, total) in after["processes"].items():
        if role in used:
            earlier = before["processes"].get(pid)
            used[role] += total - (earlier[1] if earlier and earlier[0] == role else 0.0)
    machine = after["machine"] - before["machine"]
    used["other"] = max(0.0, machine - sum(used.values()))
    return {role: value / seconds for role, value in used.items()} if seconds else used


def server_env(target: Target, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OWNED_ENV}
    env.update(CDP_HOME=str(target.home), CDP_DATABASE_URL=target.database_url, CDP_WRITE_KEYS=WRITE_KEY,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if args.sqlite_cache_mb:
        env["CDP_SQLITE_CACHE_MB"] = str(args.sqlite_cache_mb)
    return env


def start_server(target: Target, env: dict[str, str], *, fallback: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    where = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]
    if target.server == "ours" and not fallback:
        command = [sys.executable, "-m", "cdp", "serve", *where]
    else:
        app = "serving.app:create_app" if target.server == "ours" else "bench.ceiling:create_app"
        # The options `cdp serve` hands to uvicorn.run, so both servers run the same stack.
        command = [sys.executable, "-m", "uvicorn", app, "--factory", *where, "--loop", "uvloop",
                   "--http", "httptools", "--log-level", "warning", "--no-access-log",
                   "--timeout-graceful-shutdown", "10"]
    target.home.mkdir(parents=True, exist_ok=True)
    with open(target.home / "server.log", "ab") as output:
        # Own session: the uvicorn workers form a group the bench can stop as one, and a Ctrl-C
        # in the terminal reaches only the bench, which then stops them in order.
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    _running.append(process)
    return process, port


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(process: subprocess.Popen, port: int, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def last_error_line(target: Target) -> str:
    lines = [line.strip() for line in _read(target.home / "server.log").splitlines() if "Error" in line]
    return lines[-1][:160] if lines else "no error in the log"


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to uvicorn's supervisor (it stops its workers), then SIGKILL to whatever is left."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group is the one this bench started
    except ProcessLookupError:
        pass
    process.wait()
    if process in _running:
        _running.remove(process)


def stop_all() -> None:
    for process in list(_running):
        stop(process)


def _exit_on_signal(signum, _frame) -> None:  # type: ignore[no-untyped-def]
    raise SystemExit(128 + signum)


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


# --- report -------------------------------------------------------------------------------------


def summary(result: LoadResult) -> str:
    text = (f"{result.events_per_s:,.0f} events/s, {result.requests_per_s:,.1f} req/s, "
            f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, errors {result.errors}")
    if result.rejections:
        text += f", {result.rejections} answers with quarantined messages"
    if result.exhausted:
        text += " (bodies ran out early: raise --max-rate)"
    for sample in result.error_samples:
        text += f"\n    error: {sample}"
    return text


def table(outcomes: list[Outcome]) -> list[str]:
    ceilings = {(o.store, o.size): o.result for o in outcomes if o.server == "ceiling"}
    header = ("store", "size", "server", "events/s", "req/s", "p50 ms", "p99 ms", "errors", "ratio", "p99 ratio",
              "server CPUs", "other CPUs", "backlog", "drain s", "attributed/s")
    rows = []
    for o in outcomes:
        r, ceiling = o.result, ceilings.get((o.store, o.size))
        ratio = p99_ratio = ""
        if o.server == "ours" and ceiling and ceiling.events_per_s:
            ratio = f"{r.events_per_s / ceiling.events_per_s:.2f}"
            p99_ratio = f"{r.p99_ms / ceiling.p99_ms:.2f}"
        rows.append((o.store, o.size, o.server, f"{r.events_per_s:,.0f}", f"{r.requests_per_s:,.1f}",
                     f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", str(r.errors), ratio, p99_ratio,
                     f"{o.cpu['servers']:.2f}", f"{o.cpu['other']:.2f}",
                     *((f"{o.attribution.backlog:,}", f"{o.attribution.drain_s:.1f}",
                        f"{o.attribution.per_s(r):,.0f}") if o.attribution else ("", "", ""))))
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: tuple) -> str:
        return "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows),
            "ratio = ours events/s / ceiling events/s; p99 ratio = ours p99 / ceiling p99 (same store, same size)",
            "server CPUs = CPUs the server processes kept busy on average; other CPUs = machine load from anything "
            "but the bench, its servers and PostgreSQL (noise: compare runs with little of it)",
            "backlog = events not yet attributed to profiles when the load stopped; drain s = until none was left; "
            "attributed/s = measured events / (measured s + drain s)"]


if __name__ == "__main__":
    run(main, on_interrupt=stop_all)
