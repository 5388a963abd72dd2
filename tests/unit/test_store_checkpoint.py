"""The desk's store (``storage.db.Database``): its writer never checkpoints inside a commit; a thread
of its own does (``storage.wal_checkpoint``), and the write-ahead log still stays small."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import sqlite_utils

from storage.db import Database
from storage.wal_checkpoint import Checkpointer

pytestmark = pytest.mark.timeout(120)

BATCHES, PER_BATCH, SIZE = 60, 20, 4096  # about 5 MB of values


def wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def insert(db: sqlite_utils.Database, rows: list[tuple[int, bytes]]) -> None:
    db.conn.executemany("INSERT INTO blobs VALUES (?, ?)", rows)


def checkpoint_once_more(checkpointer: Checkpointer) -> None:
    """Ask for a checkpoint and wait, by the thread's condition, until one more has run."""
    with checkpointer.done:
        seen = checkpointer.checkpoints
        checkpointer.committed()
        assert checkpointer.done.wait_for(lambda: checkpointer.checkpoints > seen, 30)


@pytest.mark.parametrize("checkpoint", ["background", "writer"])
def test_the_store_writer_leaves_checkpoints_to_its_own_thread_and_the_log_stays_small(tmp_path, checkpoint):
    """With ``background`` the writer's connection never checkpoints (``wal_autocheckpoint`` 0), and
    after the other thread's checkpoints (passive, then restart) the writer starts the log again, so
    it stays a few batches long; with ``writer`` (SQLite's checkpoint at 8,192 pages, inside a
    commit) the same writes pile up in the log: the sizes tell the two apart. The test waits for the
    thread's checkpoints by its condition, never by the clock. Everything written reads back."""
    path = tmp_path / "desk.db"
    db = Database(path, checkpoint=checkpoint)
    try:
        checkpointer = db._checkpointer
        assert (checkpointer is not None) is (checkpoint == "background")
        if checkpointer is not None:
            checkpointer.interval_s, checkpointer.restart_pages = 0.0, 1  # every commit, and restart
        autocheckpoint = db.write(lambda d: d.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert autocheckpoint == (0 if checkpoint == "background" else 8192)
        db.write(lambda d: d.conn.execute("CREATE TABLE blobs (n INTEGER PRIMARY KEY, value BLOB)"))
        largest = 0
        for b in range(BATCHES):
            rows = [(b * PER_BATCH + i, os.urandom(SIZE)) for i in range(PER_BATCH)]
            db.write(functools.partial(insert, rows=rows))
            largest = max(largest, wal_bytes(path))
            if checkpointer is not None:
                checkpoint_once_more(checkpointer)
        written = BATCHES * PER_BATCH * SIZE
        if checkpointer is not None:
            assert checkpointer.checkpoints >= BATCHES
            assert checkpointer.restarts > 0
            assert largest < written / 4, f"the log grew to {largest} bytes of {written} written"
        else:
            assert largest > written, "without checkpoints every value stays in the log"
        stored = db.query("SELECT n, length(value) AS size FROM blobs ORDER BY n")
        assert [(r["n"], r["size"]) for r in stored] == [(n, SIZE) for n in range(BATCHES * PER_BATCH)]
    finally:
        db.close()


def test_a_store_closed_before_any_write_stops_its_idle_checkpoint_thread(tmp_path):
    """The checkpoint thread opens no connection until the first commit, and stops with the store."""
    db = Database(tmp_path / "desk.db")
    checkpointer = db._checkpointer
    assert checkpointer is not None and checkpointer.is_alive()
    db.close()
    assert not checkpointer.is_alive()
    assert checkpointer.checkpoints == 0
