"""When requests last came, and last waited back to back, in any server process on one SQLite file.

SQLite has one write lock for the whole file. In a burst, the requests of one server process can
wait for it while the attribution follower of another process, which sees none of them, holds it
as if the store were quiet. So each process's group committer notes both times here, a 16-byte
file beside the database mapped into every process, and reads the latest of all of them: the
attribution share (cdp.events.attribution) then holds across processes. It mattered once
attribution's batches went without a savepoint and got cheaper, so that a follower came back
sooner: bench.profiles (SQLite, 2 workers) acknowledged 7,500-8,300 events/s as shipped without
the board, 10,100-11,300 with it, 9,700-10,200 before either change. Times are
``time.monotonic()``: on Linux one clock (CLOCK_MONOTONIC) for every process of the machine, and
the processes of one SQLite store share a machine. PostgreSQL takes many writers side by side:
its processes need no board."""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from sqlalchemy import Engine

_TIME = struct.Struct("d")
_REQUEST, _SATURATED = 0, _TIME.size  # the offsets of the two times
_SIZE = 2 * _TIME.size


class RequestBoard:
    """Two times shared by the processes of one SQLite store; the last writer of each wins."""

    def __init__(self, path: Path) -> None:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(descriptor).st_size < _SIZE:  # new: every process that races here sizes it alike
                os.ftruncate(descriptor, _SIZE)
            self._shared = mmap.mmap(descriptor, _SIZE)
        finally:
            os.close(descriptor)

    @classmethod
    def for_engine(cls, engine: Engine) -> RequestBoard | None:
        """The board of ``engine``'s SQLite file; None for PostgreSQL or a database in memory."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
            return None
        return cls(Path(f"{database}-requests"))

    def mark_request(self, at: float) -> None:
        _TIME.pack_into(self._shared, _REQUEST, at)

    def mark_saturated(self, at: float) -> None:
        _TIME.pack_into(self._shared, _SATURATED, at)

    def last_request(self, now: float) -> float:
        return self._read(_REQUEST, now)

    def last_saturated(self, now: float) -> float:
        return self._read(_SATURATED, now)

    def _read(self, offset: int, now: float) -> float:
        at = _TIME.unpack_from(self._shared, offset)[0]
        # A time past ``now`` was written before the machine restarted (the clock starts again at
        # boot): it says nothing about the processes running now.
        return at if at <= now else float("-inf")
