"""The embedded log's checkpoints run beside the writer, not inside its commits, and still keep the
write-ahead log from growing (``pipeline.bus.embedded_checkpoint``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.bus import embedded_checkpoint
from pipeline.bus.embedded import EmbeddedBus
from pipeline.topics import TopicSpec

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
