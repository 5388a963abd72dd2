"""The embedded log's durability promises: what ``flush()`` or ``commit()`` returned for survives a
``kill -9``, a log interrupted mid-write stays readable and gap-free, and concurrent writers
(threads of one process, or several processes on one file) lose nothing."""

from __future__ import annotations

import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from pipeline.bus import embedded_wake
from pipeline.bus.base import GROUP_HAS_MEMBERS, Record
from pipeline.bus.embedded import EmbeddedBus
from pipeline.topics import TopicSpec

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "durable"


def open_bus(path: Path) -> EmbeddedBus:
    return EmbeddedBus(path, session_timeout_ms=1500, maintenance_interval_s=0.2, poll_interval_s=0.02)


class Child:
    """A Python subprocess running ``script``; its stdout lines arrive on a queue."""

    def __init__(self, script: str, *args: object) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]  # a pipe: stdout=PIPE
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float = 60.0) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"child said nothing for {timeout:.0f} s")
        if line is None:
            self.proc.wait(10)
            assert self.proc.stderr is not None  # a pipe: stderr=PIPE above
            pytest.fail(f"child exited ({self.proc.returncode}): {self.proc.stderr.read()}")
        return line

    def go(self) -> None:
        """Send the line a child waits for on stdin."""
        self.proc.stdin.write("go\n")  # type: ignore[union-attr]  # a pipe: stdin=PIPE
        self.proc.stdin.flush()  # type: ignore[union-attr]  # a pipe: stdin=PIPE

    def kill(self) -> list[str]:
        """SIGKILL the child; return the lines it printed that were not read yet."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        assert self.proc.returncode == -signal.SIGKILL
        self._reader.join(30)
        rest: list[str] = []
        while True:
            line = self.lines.get_nowait()
            if line is None:
                return rest
            rest.append(line)

    def wait(self, timeout: float = 120.0) -> None:
        self.proc.wait(timeout)
        self._reader.join(30)
        assert self.proc.returncode == 0, self.proc.stderr.read()  # type: ignore[union-attr]  # a pipe: stderr=PIPE

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def children():
    started: list[Child] = []

    def start(script: str, *args: object) -> Child:
        child = Child(script, *args)
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


def read_all(bus: EmbeddedBus, group: str, topic: str, count: int, timeout: float = 60.0) -> list[Record]:
    consumer = bus.consumer(group, [topic])
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count:
            assert time.monotonic() < deadline, f"read {len(records)} of {count}"
            records += consumer.poll(5000, 0.1)
        records += consumer.poll(5000, 0.2)  # nothing beyond ``count`` may come
        return records
    finally:
        consumer.close()


def integrity_ok(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


PRODUCE_COMMIT_SLEEP = """
    import sys, time
    from pipeline.bus.embedded import EmbeddedBus
    from pipeline.topics import TopicSpec
    path, n, upto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    bus = EmbeddedBus(path, session_timeout_ms=1500, maintenance_interval_s=0.2)
    bus.create_topics([TopicSpec("durable", 1, None)])
    p = bus.producer()
    for i in range(n):
        p.produce("durable", b"%d" % i, key=b"k", headers=[("seq", b"%d" % i)])
    assert p.flush() == 0
    c = bus.consumer("g", ["durable"])
    got = []
    while len(got) < upto:
        got += c.poll(upto - len(got), 1.0)
    c.commit(got)
    print("READY", flush=True)
    time.sleep(600)
"""

PRODUCE_FOREVER = """
    import sys
    from pipeline.bus.embedded import EmbeddedBus
    from pipeline.topics import TopicSpec
    path, batch = sys.argv[1], int(sys.argv[2])
    bus = EmbeddedBus(path, maintenance_interval_s=0.05)
    bus.create_topics([TopicSpec("durable", 1, None)])
    i = bus.describe_topics(["durable"])[0].partitions[0].end_offset  # go on after a restart
    p = bus.producer()
    print("STARTED", i, flush=True)
    while True:
        for _ in range(batch):
            p.produce("durable", b"%d" % i, key=b"k")
            i += 1
        if p.flush() == 0:
            print("FLUSHED", i, flush=True)
"""

PRODUCE_N = """
    import sys
    from pipeline.bus.embedded import EmbeddedBus
    from pipeline.topics import TopicSpec
    path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bus = EmbeddedBus(path)
    bus.create_topics([TopicSpec("durable", 1, None)])
    print("STARTED", flush=True)
    sys.stdin.readline()  # start together with the other process
    p = bus.producer()
    for i in range(n):
        p.produce("durable", b"%s:%d" % (name.encode(), i), key=name.encode())
        if i % 100 == 99:
            assert p.flush() == 0
    assert p.flush() == 0
    bus.close()
    print("DONE", flush=True)
"""


def test_flushed_messages_and_commits_survive_kill_9(tmp_path, children):
    path, n, upto = tmp_path / "bus.db", 2000, 1234
    child = children(PRODUCE_COMMIT_SLEEP, path, n, upto)
    assert child.next_line() == "READY"
    child.kill()

    integrity_ok(path)
    bus = open_bus(path)
    try:
        state = bus.describe_topics([TOPIC])[0]
        assert [(p.start_offset, p.end_offset) for p in state.partitions] == [(0, n)]
        [group] = [g for g in bus.describe_groups() if g.group_id == "g"]
        assert [(p.topic, p.partition, p.committed) for p in group.partitions] == [(TOPIC, 0, upto)]

        records = read_all(bus, "fresh", TOPIC, n)
        assert [r.offset for r in records] == list(range(n))
        assert [r.value for r in records] == [b"%d" % i for i in range(n)]
        assert all(r.header("seq") == r.value and r.key == b"k" for r in records)

        # The old member died without leaving; once it has expired the group goes on from its
        # committed offset.
        rest = read_all(bus, "g", TOPIC, n - upto)
        assert [r.offset for r in rest] == list(range(upto, n))
    finally:
        bus.close()


def test_a_member_killed_with_9_leaves_its_group_after_the_session_timeout(tmp_path, children):
    """On Kafka the broker drops a dead member after its session timeout; here no other member's
    heartbeat may ever come, so describing and deleting the group look at the heartbeat's age."""
    path = tmp_path / "bus.db"
    child = children(PRODUCE_COMMIT_SLEEP, path, 10, 10)
    assert child.next_line() == "READY"
    bus = open_bus(path)
    try:
        [group] = [g for g in bus.describe_groups() if g.group_id == "g"]
        assert group.members == 1
        assert bus.delete_groups(["g"]) == {"g": GROUP_HAS_MEMBERS}
        child.kill()
        deadline = time.monotonic() + 30
        while [g.members for g in bus.describe_groups() if g.group_id == "g"] != [0]:
            assert time.monotonic() < deadline, f"still described with members: {bus.describe_groups()}"
            time.sleep(0.1)
        assert bus.delete_groups(["g"]) == {"g": None}
        assert "g" not in {g.group_id for g in bus.describe_groups()}
        assert sqlite3.connect(path).execute("SELECT count(*) FROM members").fetchone()[0] == 0
    finally:
        bus.close()


def test_kill_9_while_producing_keeps_every_flushed_message_once(tmp_path, children):
    path = tmp_path / "bus.db"
    rng = random.Random()
    flushed = 0
    for round_ in range(3):  # each round goes on writing the log the previous kill interrupted
        child = children(PRODUCE_FOREVER, path, 200)
        started = child.next_line()
        assert started.startswith("STARTED ") and int(started.split()[1]) >= flushed, started
        reports = 0
        while reports < 10 + round_ * 5:
            line = child.next_line()
            assert line.startswith("FLUSHED "), line
            flushed = max(flushed, int(line.split()[1]))
            reports += 1
        time.sleep(rng.uniform(0, 0.05))  # land the kill anywhere in the write loop
        for line in child.kill():
            if line.startswith("FLUSHED "):
                flushed = max(flushed, int(line.split()[1]))

        integrity_ok(path)
        bus = open_bus(path)
        try:
            [part] = bus.describe_topics([TOPIC])[0].partitions
            assert part.start_offset == 0
            assert part.end_offset >= flushed, "a message flush() returned for is lost"
            records = read_all(bus, f"check-{round_}", TOPIC, part.end_offset)
            assert [r.offset for r in records] == list(range(part.end_offset)), "offsets gap"
            assert [r.value for r in records] == [b"%d" % i for i in range(part.end_offset)], (
                "a message is missing, duplicated or out of order"
            )
        finally:
            bus.close()


def test_threads_producing_concurrently_lose_nothing(tmp_path):
    bus = open_bus(tmp_path / "bus.db")
    try:
        bus.create_topics([TopicSpec(TOPIC, 2, None)])
        threads_n, per_thread = 4, 5000
        shared = bus.producer()
        errors: list[BaseException] = []
        undelivered: list[int] = []

        def work(t: int) -> None:
            # Threads 0 and 1 share one producer, 2 and 3 have their own.
            producer = shared if t < 2 else bus.producer()
            try:
                for i in range(per_thread):
                    producer.produce(TOPIC, b"%d:%d" % (t, i), key=b"t%d" % t)
                    if i % 500 == 499:
                        undelivered.append(producer.flush())
                undelivered.append(producer.flush())
            except BaseException as exc:  # noqa: BLE001 - any failure in the thread is reported by the test
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not errors
        assert set(undelivered) == {0}

        records = read_all(bus, "check", TOPIC, threads_n * per_thread)
        assert len(records) == threads_n * per_thread
        seqs: dict[int, list[int]] = defaultdict(list)
        offsets: dict[int, list[int]] = defaultdict(list)
        for r in records:
            t, i = map(int, (r.value or b"").split(b":"))
            seqs[t].append(i)
            offsets[r.partition].append(r.offset)
        for t in range(threads_n):
            assert seqs[t] == list(range(per_thread)), f"thread {t} lost or reordered messages"
        for p, offs in offsets.items():
            assert offs == list(range(len(offs))), f"partition {p}: offsets not contiguous"
    finally:
        bus.close()


def test_processes_sharing_one_file_lose_nothing(tmp_path, children):
    path, n = tmp_path / "bus.db", 3000
    open_bus(path).close()  # create the schema once, before two processes race to
    writers = [children(PRODUCE_N, path, name, n) for name in ("p1", "p2")]
    for w in writers:
        assert w.next_line() == "STARTED"
    for w in writers:
        w.go()
    for w in writers:
        assert w.next_line(120) == "DONE"
        w.wait()

    integrity_ok(path)
    bus = open_bus(path)
    try:
        records = read_all(bus, "check", TOPIC, 2 * n)
        assert [r.offset for r in records] == list(range(2 * n)), "offsets not unique/contiguous"
        seqs: dict[bytes, list[int]] = defaultdict(list)
        for r in records:
            name, i = (r.value or b"").split(b":")
            seqs[name].append(int(i))
        assert seqs == {b"p1": list(range(n)), b"p2": list(range(n))}
    finally:
        bus.close()


@pytest.mark.parametrize(("shared", "wake"), [(True, "notify"), (True, "poll"), (False, "notify")])
def test_a_shared_bus_wakes_an_idle_consumer_on_another_writers_commit(tmp_path, shared, wake):
    """Two bus instances on one file stand for two processes: the consumer's writer never sees the
    other's commits, so only a shared bus is woken by them (by the other's datagram with
    ``notify``, by the file's data version with ``poll``); the other waits until its time is over.
    The wait says which happened (no stopwatch: a loaded machine cannot make a 20 s wait time out
    before a commit 0.3 s into it). With ``notify`` the consumer never looks at the file while it
    waits, so its waking up can only have come from the other writer's datagram."""
    path = tmp_path / "bus.db"
    # no maintenance during the test: its commits would wake the reader's own writer's waiters
    reader, writer = (EmbeddedBus(path, shared=shared, wake=wake, maintenance_interval_s=3600) for _ in range(2))
    try:
        assert reader.wakes_across_processes is (shared and wake == "notify")
        reader.create_topics([TopicSpec(TOPIC, 1, 86_400_000)])
        consumer = reader.consumer("g", [TOPIC], auto_offset_reset="earliest")
        assert consumer.poll(10, 0.2) == []
        assert consumer._watches_file() is (shared and wake == "poll")
        reader._call(lambda _conn: None)  # the reader's own queued writes (heartbeats) are done
        seen, version = reader.commits([TOPIC]), consumer._data_version()
        producer = writer.producer()

        def produce_one() -> None:
            producer.produce(TOPIC, b"v")
            producer.flush(10)

        timer = threading.Timer(0.3, produce_one)
        timer.start()
        woken = consumer._wait(seen, version, 20.0 if shared else 1.0)
        timer.join()
        assert woken is shared, "only a shared bus is woken by another writer's commit"
        assert [r.value for r in consumer.poll(10, 2.0)] == [b"v"]
        consumer.close()
    finally:
        reader.close()
        writer.close()


def test_a_commit_between_a_consumers_look_and_its_wait_is_not_slept_through(tmp_path):
    """The consumer reads the commit count before it looks for data: a commit landing after the
    look but before the wait ends the wait at once instead of after its timeout."""
    bus = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600)
    try:
        bus.create_topics([TopicSpec(TOPIC, 1, 86_400_000)])
        consumer = bus.consumer("g", [TOPIC], auto_offset_reset="earliest")
        assert consumer.poll(10, 0.1) == []
        bus._call(lambda _conn: None)
        seen = bus.commits([TOPIC])
        producer = bus.producer()
        producer.produce(TOPIC, b"v")
        assert producer.flush(10) == 0  # committed (and notified) before the wait starts
        assert consumer._wait(seen, 0, 60.0) is True
        assert [r.value for r in consumer.poll(10, 1.0)] == [b"v"]
        consumer.close()
    finally:
        bus.close()


def test_a_listener_that_is_gone_is_forgotten(tmp_path, monkeypatch):
    """A process that died leaves its address in the wakers table; the next writer that finds
    nobody listening there deletes the row, and the live instances stay listed."""
    monkeypatch.setattr(embedded_wake, "REFRESH_S", 0.0)
    path = tmp_path / "bus.db"
    a, b = (EmbeddedBus(path, shared=True, maintenance_interval_s=3600) for _ in range(2))
    try:
        a.create_topics([TopicSpec(TOPIC, 1, 86_400_000)])
        dead = b"\0trading-desk-bus/test/dead"
        a._call(lambda conn: conn.execute("INSERT INTO wakers VALUES (?, 1)", (dead,)))
        producer = a.producer()
        for _ in range(3):  # refused on one commit, deleted on a later one
            producer.produce(TOPIC, b"v")
            assert producer.flush(10) == 0
        listed = {bytes(x) for (x,) in a._read("SELECT address FROM wakers")}
        assert a._wake_line is not None and b._wake_line is not None
        assert listed == {a._wake_line.address, b._wake_line.address}, "the dead row is deleted"
    finally:
        a.close()
        b.close()
