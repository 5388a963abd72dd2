"""A log file made before the rowid layout of ``messages`` (a WITHOUT ROWID table) works as before:
the bus keeps its table, and producing, reading by offset, committing, retention and compaction
give the same answers on both layouts."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from pipeline.bus.base import Record
from pipeline.bus.embedded import EmbeddedBus
from pipeline.bus.embedded_log import MESSAGES_WITHOUT_ROWID
from pipeline.topics import TopicSpec


def _layout(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name='messages'").fetchone()
    return "without-rowid" if "WITHOUT ROWID" in sql.upper() else "rowid"


@pytest.mark.parametrize("layout", ["rowid", "without-rowid"])
def test_both_layouts_of_the_log_answer_alike(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "bus.db"
    if layout == "without-rowid":
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.executescript(MESSAGES_WITHOUT_ROWID)
    bus = EmbeddedBus(path, maintenance_interval_s=3600)
    try:
        bus.create_topics([TopicSpec("log", 2, None), TopicSpec("latest", 1, None, cleanup="compact")])
        producer = bus.producer()
        for i in range(300):
            producer.produce("log", b"v%d" % i + b"x" * (i * 7), key=b"k%d" % (i % 5))
            producer.produce("latest", b"%d" % i, key=b"k%d" % (i % 3))
        assert producer.flush(30.0) == 0
        consumer = bus.consumer("readers", ["log"], auto_offset_reset="earliest")
        got: list[Record] = []
        while len(got) < 300:
            records = consumer.poll(120, 5.0)
            assert records
            got.extend(records)
            consumer.commit(records)
        consumer.close()
        by_partition: dict[int, list[int]] = {}
        for r in got:
            by_partition.setdefault(r.partition, []).append(r.offset)
        assert all(offsets == list(range(len(offsets))) for offsets in by_partition.values())
        assert sorted(int(r.value.split(b"x")[0][1:]) for r in got if r.value) == list(range(300))
        assert bus.read("log", 1, 10, 5)[0].offset == 10
        bus.run_maintenance()  # compaction keeps the last message per key
        latest = bus.read("latest", 0, 0, 1000)
        assert sorted(r.value for r in latest if r.value) == [b"297", b"298", b"299"]
    finally:
        bus.close()
    assert _layout(path) == layout  # a file keeps the layout it was made with
