"""WAL checkpoints of the embedded log, moved off the writer thread.

SQLite copies the write-ahead log back into the database file (a checkpoint) from inside the
``COMMIT`` that crosses ``wal_autocheckpoint`` pages, on the committing connection: on the bus
that is the writer thread. At 1,000 messages a second the writer commits about 2,000 small
transactions a second, some 16 MB of log; each checkpoint then wrote back and synced megabytes
of it while holding every producer's next batch and every consumer's offset commit for 20-45 ms,
once every couple of seconds (the stalls at a hop's p99.9).

With ``checkpoint="background"`` the writer's connection never checkpoints
(``wal_autocheckpoint=0``) and this thread does, on a connection of its own, in two steps:

1. ``PASSIVE``: copies and syncs everything committed so far, beside the writer (it neither
   waits for nor blocks the writer or any reader). This is the long part: 10-35 ms here.
2. once the log is ``RESTART_PAGES`` long, ``RESTART``: holds the writer while it copies what was
   committed during step 1 (1-2.5 ms here); it needs the write lock and no reader on the old
   log, and is tried every 0.2 ms without SQLite's busy handler (which would sleep holding the
   lock) for up to ``RESTART_WAIT_MS`` before it gives up for this round, so that the writer's next transaction
   starts the log from its beginning again. A passive checkpoint alone never lets it: the writer
   commits during every one, so the log is never wholly copied when the writer begins.

Invariants: the thread sleeps on an event while nothing is committed (no idle CPU); after a
commit it checkpoints at most once every ``interval_s``; a checkpoint that cannot run (another
process's is running, a reader is slow) is left to the next round. Closing waits for the thread
and leaves the last checkpoint to SQLite, which does one when the file's last connection closes.

Cost: per ``interval_s`` while the bus writes, the pages changed since the last round plus
``fsync`` calls, on this thread, with the GIL released by ``sqlite3``; the writer waits only
for step 2.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Literal

from pipeline.bus.embedded_log import busy
from storage.db import connect

log = logging.getLogger(__name__)

Checkpoint = Literal["background", "writer"]
LockWait = Literal["retry", "sqlite"]

INTERVAL_S = 1.0
RESTART_PAGES = 1000  # SQLite's own checkpoint point: about 4 MiB of log
RESTART_WAIT_MS = 50  # a RESTART that would wait longer for readers is left for the next round


def writer_connection(path: Path, checkpoint: Checkpoint, lock_wait: LockWait) -> sqlite3.Connection:
    """The writer's connection: SQLite's checkpoints inside ``COMMIT`` are off when another
    thread does them (``background``), on as ``storage.db.connect`` sets them otherwise. With
    ``lock_wait="retry"`` it never sleeps in SQLite's busy handler (``busy_timeout=0``):
    ``embedded_log.begin_immediate`` waits for the lock instead."""
    conn = connect(path)
    if lock_wait == "retry":
        conn.execute("PRAGMA busy_timeout=0")
    if checkpoint == "background":
        conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


class Checkpointer(threading.Thread):
    """Checkpoints ``path`` in the background after commits, at most once every ``interval_s``."""

    def __init__(self, path: Path, interval_s: float | None = None) -> None:
        super().__init__(name="embedded-bus-checkpoint", daemon=True)
        self.path = path
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        self.restart_pages = RESTART_PAGES
        self.checkpoints = 0
        self.restarts = 0
        self.done = threading.Condition()
        self._committed = threading.Event()
        self._stopping = threading.Event()

    def committed(self) -> None:
        """Called by the writer after each commit: a checkpoint is due within ``interval_s``."""
        self._committed.set()

    def run(self) -> None:
        conn = connect(self.path)
        conn.execute("PRAGMA busy_timeout=0")  # never hold the write lock while SQLite sleeps
        try:
            while True:
                self._committed.wait()
                if self._stopping.is_set():
                    return
                self._committed.clear()
                self.checkpoint(conn)
                if self._stopping.wait(self.interval_s):
                    return
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """A passive checkpoint (the long part, beside the writer); then, once the log is
        ``restart_pages`` long, a ``RESTART`` one, which holds the writer only while it copies
        what was committed during the passive one, and lets the writer start the log again."""
        try:
            ((_, frames, _),) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            if frames >= self.restart_pages:
                self._restart(conn)
        except sqlite3.OperationalError as exc:
            log.debug("embedded bus checkpoint skipped: %s", exc)
        with self.done:
            self.checkpoints += 1
            self.done.notify_all()

    def _restart(self, conn: sqlite3.Connection) -> None:
        """``RESTART``, tried every 0.2 ms for up to ``RESTART_WAIT_MS``: with no busy handler it
        gives up at once, without holding the write lock, when the writer or a reader is busy."""
        deadline = time.monotonic() + RESTART_WAIT_MS / 1000
        while True:
            try:
                ((blocked, _, _),) = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            except sqlite3.OperationalError as exc:
                if not busy(exc):
                    raise
                blocked = 1
            if not blocked:
                self.restarts += 1
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.0002)

    def stop(self) -> None:
        self._stopping.set()
        self._committed.set()
        self.join(timeout=30)
