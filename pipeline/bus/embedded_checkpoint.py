"""WAL checkpoints of the embedded log, moved off the writer thread.

SQLite copies the write-ahead log back into the database file (a checkpoint) from inside the
``COMMIT`` that crosses ``wal_autocheckpoint`` pages, on the committing connection: on the bus
that is the writer thread. At 1,000 messages a second the writer commits about 2,000 small
transactions a second, some 16 MB of log; each checkpoint then wrote back and synced megabytes
of it while holding every producer's next batch and every consumer's offset commit for 20-45 ms,
once every couple of seconds (the stalls at a hop's p99.9).

With ``checkpoint="background"`` the writer's connection never checkpoints
(``wal_autocheckpoint=0``) and a thread of its own does (``storage.wal_checkpoint.Checkpointer``,
which the desk's store uses too): a ``PASSIVE`` checkpoint beside the writer (10-35 ms here), then,
once the log is ``RESTART_PAGES`` long, a ``RESTART`` that holds the writer 1-2.5 ms so that its
next transaction starts the log again, tried for up to ``RESTART_WAIT_MS``. This module keeps the
bus's settings of it and the writer's connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

from storage import wal_checkpoint
from storage.db import connect
from storage.wal_checkpoint import Checkpoint

__all__ = ["Checkpoint", "Checkpointer", "LockWait", "writer_connection"]

LockWait = Literal["retry", "sqlite"]

INTERVAL_S = wal_checkpoint.INTERVAL_S
RESTART_PAGES = wal_checkpoint.RESTART_PAGES  # SQLite's own checkpoint point: about 4 MiB of log
RESTART_WAIT_MS = wal_checkpoint.RESTART_WAIT_MS  # a RESTART waiting longer is left for the next round


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


class Checkpointer(wal_checkpoint.Checkpointer):
    """The bus file's checkpoint thread, with this module's interval and sizes (read when it is made)."""

    def __init__(self, path: Path, interval_s: float | None = None) -> None:
        super().__init__(
            path,
            connect,
            name="embedded-bus-checkpoint",
            interval_s=INTERVAL_S if interval_s is None else interval_s,
            restart_pages=RESTART_PAGES,
            restart_wait_ms=RESTART_WAIT_MS,
        )
