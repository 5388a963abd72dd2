"""An asynchronous commit on the embedded bus that fails (its member left the group meanwhile)
raises from the consumer's next commit (once), as a synchronous one raises at once."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from pipeline.bus.embedded import EmbeddedBus
from pipeline.errors import CommitFailedError
from pipeline.topics import TopicSpec


def test_a_failed_asynchronous_commit_raises_from_the_next(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600)
    try:
        bus.create_topics([TopicSpec("t", 1, None)])
        producer = bus.producer()
        for i in range(10):
            producer.produce("t", b"%d" % i)
        assert producer.flush(10) == 0
        consumer = bus.consumer("g", ["t"], auto_offset_reset="earliest")
        records = consumer.poll(100, 5.0)
        assert len(records) == 10
        consumer.commit(records[:5], asynchronous=True)
        bus._call(lambda _conn: None)  # the writer has applied it (a flush with nothing produced waits for nothing)
        assert [p.committed for g in bus.describe_groups() if g.group_id == "g" for p in g.partitions] == [5]
        with contextlib.closing(sqlite3.connect(tmp_path / "bus.db")) as conn, conn:
            conn.execute("DELETE FROM members WHERE group_id='g'")  # as if the group had moved on without it
        consumer.commit(records, asynchronous=True)  # sent; fails on the writer
        bus._call(lambda _conn: None)
        with pytest.raises(CommitFailedError, match="no longer in group"):
            consumer.commit([])  # nothing to commit now: what raises is the earlier one's failure
        consumer.commit([])  # raised once
        assert [p.committed for g in bus.describe_groups() if g.group_id == "g" for p in g.partitions] == [5]
        consumer.close()
    finally:
        bus.close()
