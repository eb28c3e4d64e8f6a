"""A benchmark's report: each line printed as it comes, then all of them written to bench/out."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from bench.ingest import OUT


@contextmanager
def report(name: str) -> Iterator[Callable[[str], None]]:
    """``log(line)`` for the run; its first line names the benchmark, the time, the commit, the CPUs, the load
    average and SQLite's version; at the end the lines go to ``bench/out/NAME-<timestamp>.txt``."""
    OUT.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    log(f"{name} benchmark {datetime.now(UTC).isoformat(timespec='seconds')} (commit {commit}), "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, SQLite {sqlite3.sqlite_version}")
    yield log
    path = OUT / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.txt"
    path.write_text("\n".join(lines) + "\n")
    print(f"written to {path}")
