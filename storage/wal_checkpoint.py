"""WAL checkpoints of a SQLite file on a thread of their own, beside its one writer.

SQLite copies the write-ahead log back into the database file (a checkpoint) from inside the
``COMMIT`` that crosses ``wal_autocheckpoint`` pages, on the committing connection: the writer
thread. Every write queued behind that commit waits the 20-45 ms it takes. With a ``Checkpointer``
the writer's connection never checkpoints (``wal_autocheckpoint=0``) and this thread does, on a
connection of its own, in two steps:

1. ``PASSIVE``: copies and syncs everything committed so far, beside the writer (it neither waits
   for nor blocks the writer or any reader). This is the long part: 10-35 ms here.
2. once the log is ``restart_pages`` long, ``RESTART``: holds the writer while it copies what was
   committed during step 1 (1-2.5 ms here); it needs the write lock and no reader on the old log,
   and is tried every 0.2 ms without SQLite's busy handler (which would sleep holding the lock)
   for up to ``restart_wait_ms`` before it gives up for this round, so that the writer's next
   transaction starts the log from its beginning again. A passive checkpoint alone never lets it:
   the writer commits during every one, so the log is never wholly copied when the writer begins.

Used by the embedded bus's writer (``pipeline.bus.embedded_checkpoint``) and the desk's store
(``storage.db.Database``). Invariants: the thread opens its connection at the first commit and
sleeps on an event while nothing is committed (no idle CPU); after a commit it checkpoints at most
once every ``interval_s``; a checkpoint that cannot run (another process's is running, a reader is
slow) is left to the next round. Stopping waits for the thread and leaves the last checkpoint to
SQLite, which does one when the file's last connection closes.

Cost: per ``interval_s`` while the file is written, the pages changed since the last round plus
``fsync`` calls, on this thread, with the GIL released by ``sqlite3``; the writer waits only for
step 2.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

# Who checkpoints a file: a thread of its own (``background``), or SQLite inside the writer's
# commits (``writer``, the older way, kept for comparison).
Checkpoint = Literal["background", "writer"]

INTERVAL_S = 1.0
RESTART_PAGES = 1000  # SQLite's own checkpoint point: about 4 MiB of log
RESTART_WAIT_MS = 50  # a RESTART that would wait longer for readers is left for the next round


def busy(exc: sqlite3.OperationalError) -> bool:
    """True when ``exc`` says another connection holds the lock (SQLITE_BUSY)."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "locked" in str(exc)


class Checkpointer(threading.Thread):
    """Checkpoints ``path`` after commits, at most once every ``interval_s``.

    The writer thread calls ``committed`` after each commit; ``stop`` is called once, after the
    writer stopped. ``checkpoints`` counts the rounds (``done`` is notified after each) and
    ``restarts`` the log restarts."""

    def __init__(
        self,
        path: Path,
        connect: Callable[[Path], sqlite3.Connection],
        *,
        name: str = "wal-checkpoint",
        interval_s: float = INTERVAL_S,
        restart_pages: int = RESTART_PAGES,
        restart_wait_ms: float = RESTART_WAIT_MS,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.path = path
        self.connect = connect
        self.interval_s = interval_s
        self.restart_pages = restart_pages
        self.restart_wait_ms = restart_wait_ms
        self.checkpoints = 0
        self.restarts = 0
        self.done = threading.Condition()
        self._committed = threading.Event()
        self._stopping = threading.Event()

    def committed(self) -> None:
        """Called by the writer after each commit: a checkpoint is due within ``interval_s``."""
        self._committed.set()

    def run(self) -> None:
        self._committed.wait()
        if self._stopping.is_set():
            return
        conn = self.connect(self.path)
        conn.execute("PRAGMA busy_timeout=0")  # never hold the write lock while SQLite sleeps
        try:
            while True:
                self._committed.clear()
                self.checkpoint(conn)
                if self._stopping.wait(self.interval_s):
                    return
                self._committed.wait()
                if self._stopping.is_set():
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
            log.debug("checkpoint of %s skipped: %s", self.path.name, exc)
        with self.done:
            self.checkpoints += 1
            self.done.notify_all()

    def _restart(self, conn: sqlite3.Connection) -> None:
        """``RESTART``, tried every 0.2 ms for up to ``restart_wait_ms``: with no busy handler it
        gives up at once, without holding the write lock, when the writer or a reader is busy."""
        deadline = time.monotonic() + self.restart_wait_ms / 1000
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
        if self.is_alive():
            self.join(timeout=30)
