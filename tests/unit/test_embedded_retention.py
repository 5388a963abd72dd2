"""The embedded bus's retention pass drops each partition's expired head, as Kafka does, and costs
what expired, not the size of the log.

A pass that scanned every message on its timestamp held the file's write lock for seconds on the
soak's log (``python -m bench.soak``) and paged the memory-mapped file into each process running
it. The cost is counted in SQLite virtual-machine steps (a progress handler), never in seconds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.bus.embedded import EmbeddedBus
from pipeline.topics import TopicSpec
from storage.db import connect
from tests.sqlite_steps import steps

TOPIC = "kept-a-minute"
HOUR_MS = 3_600_000


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[EmbeddedBus]:
    b = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600)  # passes run only when a test asks
    b.create_topics([TopicSpec(TOPIC, 1, 60_000)])
    yield b
    b.close()


def produce(bus: EmbeddedBus, n: int) -> None:
    producer = bus.producer()
    for i in range(n):
        producer.produce(TOPIC, b"message %d" % i, key=b"k")
    assert producer.flush(30.0) == 0


def age(bus: EmbeddedBus, offsets: list[int]) -> None:
    """Stamp these messages two hours old, as if they had waited that long."""
    with sqlite3.connect(bus.path) as conn:
        conn.executemany(
            "UPDATE messages SET timestamp=? WHERE topic=? AND offset=?",
            [(int(time.time() * 1000) - 2 * HOUR_MS, TOPIC, o) for o in offsets],
        )


def offsets(bus: EmbeddedBus) -> list[int]:
    with sqlite3.connect(bus.path) as conn:
        return [r[0] for r in conn.execute("SELECT offset FROM messages WHERE topic=? ORDER BY offset", (TOPIC,))]


def steps_of_a_pass(bus: EmbeddedBus) -> int:
    """SQLite virtual-machine steps (in hundreds) one retention and compaction pass takes."""
    conn = connect(bus.path)

    def one_pass() -> None:
        conn.execute("BEGIN IMMEDIATE")
        bus._maintain(conn)
        conn.execute("COMMIT")

    try:
        return steps(conn, one_pass)[0]
    finally:
        conn.close()


def test_retention_drops_the_expired_head_and_keeps_an_old_message_behind_a_fresh_one(bus: EmbeddedBus) -> None:
    produce(bus, 10)
    age(bus, [0, 1, 2, 3, 6])  # 6 sits behind fresh 4 and 5: Kafka keeps it until the head reaches it
    bus.run_maintenance()
    assert offsets(bus) == [4, 5, 6, 7, 8, 9]
    state = bus.describe_topics([TOPIC])[0].partitions[0]
    assert (state.start_offset, state.end_offset) == (4, 10)
    age(bus, [4, 5, 7, 8, 9])
    bus.run_maintenance()
    assert offsets(bus) == []
    state = bus.describe_topics([TOPIC])[0].partitions[0]
    assert (state.start_offset, state.end_offset) == (10, 10), "retention never moves the end"


def test_a_pass_over_a_log_with_nothing_expired_costs_the_same_at_any_size(bus: EmbeddedBus) -> None:
    produce(bus, 500)
    small = steps_of_a_pass(bus)
    produce(bus, 19_500)
    large = steps_of_a_pass(bus)
    # A scan of every message costs about 40 times as much on the log 40 times as long.
    assert large < 2 * small + 10, (small, large)
    assert len(offsets(bus)) == 20_000
