"""What a benchmark run prints and keeps: a first line about the machine, every line said, a file in bench/out."""

from __future__ import annotations

import os
import platform
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


class Report:
    """Lines printed as they come and written to ``bench/out/<name>-<start time>.txt`` by :meth:`write`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = datetime.now(UTC)
        self.lines: list[str] = []

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def machine(self) -> str:
        """The run's start, the code measured and the machine it shares: CPUs, memory, load."""
        return (f"{self.name} benchmark {self.started:%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} CPUs, "
                f"{memory_gb():.0f} GB RAM, load average {os.getloadavg()[0]:.1f} (commit {commit()}), "
                f"SQLite {sqlite3.sqlite_version}")

    def write(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{self.name}-{self.started:%Y%m%dT%H%M%SZ}.txt"
        path.write_text("\n".join(self.lines) + "\n")
        print(f"\nwritten to {path.relative_to(ROOT)}")


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip() or "?"


def run(main: Callable[[], None], *, on_interrupt: Callable[[], None] = lambda: None) -> None:
    """A benchmark's entry point: Ctrl-C ends it with status 130 and no traceback."""
    try:
        main()
    except KeyboardInterrupt:
        on_interrupt()
        sys.exit(130)


def memory_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def peak_mb() -> float:
    """Peak resident memory of this process.

    ``ru_maxrss`` would do, but Linux carries it over ``exec`` from the forking parent: a child
    of a big parent would report the parent's size. ``VmHWM`` belongs to this process alone.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
