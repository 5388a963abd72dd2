"""The embedded log's writer: its checkpoints run beside it, not inside its commits, and still keep
the write-ahead log from growing (``pipeline.bus.embedded_checkpoint``); it waits for another
writer's lock in small steps of its own (``pipeline.bus.embedded_log.begin_immediate``)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.bus import embedded_checkpoint, embedded_log
from pipeline.bus.embedded import EmbeddedBus
from pipeline.bus.embedded_checkpoint import writer_connection
from pipeline.bus.embedded_log import begin_immediate, busy
from pipeline.topics import TopicSpec
from storage.db import connect

pytestmark = pytest.mark.timeout(120)

TOPIC = "checkpointed"
BATCHES, PER_BATCH, SIZE = 60, 20, 4096  # about 5 MB of values


def wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def checkpoint_once_more(checkpointer: embedded_checkpoint.Checkpointer) -> None:
    """Ask for a checkpoint and wait, by the thread's condition, until one more has run."""
    with checkpointer.done:
        seen = checkpointer.checkpoints
        checkpointer.committed()
        assert checkpointer.done.wait_for(lambda: checkpointer.checkpoints > seen, 30)


@pytest.mark.parametrize("checkpoint", ["background", "writer"])
def test_the_writer_leaves_checkpoints_to_its_own_thread_and_the_log_stays_small(tmp_path, monkeypatch, checkpoint):
    """With ``background`` the writer's connection never checkpoints, and after the other thread's
    checkpoints (passive, then restart) the writer starts the log again from its beginning, so it
    stays a few batches long; with ``writer`` (SQLite's checkpoint at 8,192 pages, inside a commit) the
    same writes pile up in the log: the sizes tell the two apart. The test waits for the thread's
    checkpoints by its condition, never by the clock. Everything written reads back."""
    monkeypatch.setattr(embedded_checkpoint, "INTERVAL_S", 0.0)
    monkeypatch.setattr(embedded_checkpoint, "RESTART_PAGES", 1)
    path = tmp_path / "bus.db"
    bus = EmbeddedBus(path, maintenance_interval_s=3600, checkpoint=checkpoint)
    try:
        autocheckpoint = bus._call(lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert autocheckpoint == (0 if checkpoint == "background" else 8192)
        assert (bus._checkpointer is not None) is (checkpoint == "background")
        bus.create_topics([TopicSpec(TOPIC, 1, 86_400_000)])
        producer = bus.producer()
        largest = 0
        for b in range(BATCHES):
            for i in range(PER_BATCH):
                producer.produce(TOPIC, os.urandom(SIZE - 8) + b"%08d" % (b * PER_BATCH + i))
            assert producer.flush(10) == 0
            largest = max(largest, wal_bytes(path))
            if bus._checkpointer is not None:
                checkpoint_once_more(bus._checkpointer)
        written = BATCHES * PER_BATCH * SIZE
        if checkpoint == "background":
            assert bus._checkpointer is not None and bus._checkpointer.checkpoints >= BATCHES
            assert bus._checkpointer.restarts > 0
            assert largest < written / 4, f"the log grew to {largest} bytes of {written} written"
        else:
            assert largest > written, "without checkpoints every value stays in the log"
        records = bus.read(TOPIC, 0, 0, BATCHES * PER_BATCH + 1)
        assert [int(r.value[-8:]) for r in records if r.value] == list(range(BATCHES * PER_BATCH))
    finally:
        bus.close()


def test_a_writer_waits_for_another_writers_lock_in_small_steps_and_gives_up_after_its_timeout(tmp_path, monkeypatch):
    """``begin_immediate`` on a connection without a busy handler: while another connection holds
    the write lock it keeps trying, gets the lock once the other commits (released from another
    thread when the first attempt has failed, by event, never by the clock), and raises SQLite's
    busy error when the lock is not released within its timeout."""
    path = tmp_path / "locks.db"
    holder, waiter = connect(path), writer_connection(path, "background", "retry")
    try:
        holder.execute("CREATE TABLE t (x INTEGER)")
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.OperationalError) as refused:
            begin_immediate(waiter, timeout_s=0.05)
        assert busy(refused.value)

        tried = threading.Event()

        def nap(seconds: float) -> None:
            tried.set()  # an attempt failed: the lock was held
            time.sleep(seconds)

        monkeypatch.setattr(embedded_log, "time", SimpleNamespace(monotonic=time.monotonic, sleep=nap))
        release = threading.Thread(target=lambda: (tried.wait(30), holder.execute("COMMIT")))
        release.start()
        begin_immediate(waiter, timeout_s=30)
        release.join(30)
        assert tried.is_set()
        waiter.execute("INSERT INTO t VALUES (2)")
        waiter.execute("COMMIT")
        assert sorted(x for (x,) in waiter.execute("SELECT x FROM t")) == [1, 2]
    finally:
        holder.close()
        waiter.close()
