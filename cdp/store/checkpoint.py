"""SQLite WAL checkpoints off the writers' path: a thread per engine copies the log into the database.

By default SQLite hands each checkpoint to the commit that takes the log past 1,000 pages: that
writer copies the log into the database file and syncs it while it holds the one write lock
every other writer waits for. On a store of 10M events, where each event dirties a page of each
large index, attribution's commits took 37 of its 90 µs per event, and 24 of 81 with the copies
moved out of them (in process, 60,000 events). Here a thread of the process copies the log every
``interval_s`` (a PASSIVE checkpoint: it takes no write lock) beside the writers.

The log still starts over the SQLite way: only a writer that begins after a checkpoint copied
the whole log may restart it, and a busy writer always begins again before the thread is done.
So the writers keep their own checkpoint, at ``WRITER_CHECKPOINT_PAGES``: the commit that takes
the log past it copies the frames the thread has not reached yet (a round's worth, not the log),
and the writer's next transaction starts the log over.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

# 64 MiB of log: a few rounds' worth under the heaviest load measured (bench.ingest at 10M events).
WRITER_CHECKPOINT_PAGES = 16_384


class WalCheckpointer:
    """Checkpoints the SQLite file at ``path`` every ``interval_s`` until ``engine`` is disposed or gone."""

    def __init__(self, engine: Engine, path: str, *, interval_s: float = 0.1) -> None:
        self._engine = weakref.ref(engine)
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        event.listen(engine, "engine_disposed", lambda _engine: self._stop.set())

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval_s) and self._engine() is not None:
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:  # busy, or the file is gone: the next round tries again
                    log.debug("WAL checkpoint failed", exc_info=True)
        finally:
            connection.close()
