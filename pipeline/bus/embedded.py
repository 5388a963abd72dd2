"""A durable, SQLite-backed log with Kafka's semantics, for running without a broker.

Topics have partitions; a key always lands in the same partition (CRC32, as librdkafka) so its
order is kept; consumer groups split partitions between their members (range assignment) and
keep committed offsets; retention deletes old messages and compaction keeps the last message per
key where the catalog says so. Every write goes through one writer thread per process and one
SQLite transaction per batch (WAL, ``synchronous=NORMAL``), so a ``kill -9`` loses nothing that
``flush()`` or ``commit()`` returned for. Several processes may share one file: offsets are taken
inside ``BEGIN IMMEDIATE``. The consumer is ``pipeline.bus.embedded_consumer``; the file's schema
and the writer's operations are ``pipeline.bus.embedded_log``; reads outside any group are
``pipeline.bus.embedded_reads``, wake-ups across processes ``pipeline.bus.embedded_wake`` and the
producer ``pipeline.bus.embedded_producer``. What is left here (about 550 lines) is the writer
thread and the bus's own calls, which all go through the one writer and its transactions.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

import orjson

from pipeline.bus.base import (
    GROUP_HAS_MEMBERS,
    GROUP_NOT_FOUND,
    GroupPartition,
    GroupState,
    Latency,
    OffsetReset,
    PartitionsCallback,
    PartitionState,
    Record,
    TopicState,
)
from pipeline.bus.embedded_checkpoint import Checkpoint, Checkpointer, LockWait, writer_connection
from pipeline.bus.embedded_consumer import EmbeddedConsumer
from pipeline.bus.embedded_log import (
    APPEND,
    CALL,
    FLUSH,
    QUIET_CALL,
    SCHEMA,
    begin_immediate,
    bump_generation,
    drop_head,
    now_ms,
)
from pipeline.bus.embedded_producer import EmbeddedProducer
from pipeline.bus.embedded_reads import offset_for_time, read_range
from pipeline.bus.embedded_wake import WakeLine, address_for
from pipeline.bus.embedded_wake import available as wake_available
from pipeline.errors import UnknownPartitionError, UnknownTopicError
from pipeline.topics import TopicSpec
from storage.db import connect

log = logging.getLogger(__name__)

Wake = Literal["notify", "poll"]
# Which idle consumers of this process a commit wakes: those of the topics it appended to, and all
# of them after a change of membership or topics (``topic``); or all of them after every commit,
# offset commits and flushes too (``all``, the older way, kept for comparison).
WakeScope = Literal["topic", "all"]


class _Writer(threading.Thread):
    """The one thread that writes the log file; everything else enqueues operations."""

    def __init__(self, bus: EmbeddedBus) -> None:
        super().__init__(name="embedded-bus-writer", daemon=True)
        self.bus = bus
        self.ops: deque[tuple[Any, ...]] = deque()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.conn = writer_connection(bus.path, bus.checkpoint, bus.lock_wait)
        self.next_maintenance = time.monotonic() + bus.maintenance_interval_s
        self.appended: set[str] = set()  # the topics the last committed batch appended to

    def submit(self, op: tuple[Any, ...]) -> None:
        self.ops.append(op)
        # Setting an event that is set takes its lock for nothing (150 signals a burst). The op is
        # queued before the look, and the writer clears the event before it drains the queue, so
        # a set event seen here is cleared only before this op is drained.
        if not self.wake.is_set():
            self.wake.set()

    def submit_many(self, ops: list[tuple[Any, ...]]) -> None:
        """Queue ``ops`` in order, waking the writer once: it finds them all when it drains."""
        if ops:
            self.ops.extend(ops)  # one call: the writer cannot drain part of them in between
            if not self.wake.is_set():
                self.wake.set()

    def run(self) -> None:
        while True:
            timeout = max(0.0, self.next_maintenance - time.monotonic())
            self.wake.wait(timeout)
            self.wake.clear()
            if time.monotonic() >= self.next_maintenance:
                self.ops.append((CALL, self.bus._maintain, Future()))
                self.next_maintenance = time.monotonic() + self.bus.maintenance_interval_s
            while self.ops:
                self._write_batch()
            if self.stopping.is_set() and not self.ops:
                break
        self.conn.close()

    def _write_batch(self) -> None:
        batch: list[tuple[Any, ...]] = []
        ops = self.ops
        while ops and len(batch) < 50_000:
            batch.append(ops.popleft())
        self.appended = set()
        for attempt in range(1_000_000):
            try:
                results = self._apply(batch)
                break
            except sqlite3.OperationalError as exc:  # locked by another process: wait and retry
                log.warning("embedded bus write retry %d: %s", attempt + 1, exc)
                time.sleep(min(0.05 * (attempt + 1), 1.0))
                if self.stopping.is_set() and attempt > 20:
                    results = [exc] * len(batch)
                    failed = sum(1 for op in batch if op[0] == APPEND)
                    self.bus.undelivered += failed
                    self.bus.append_failures += failed
                    break
        everyone = self.bus.wake_scope == "all"
        for op, result in zip(batch, results):
            kind = op[0]
            if kind == APPEND:
                continue
            if kind in (CALL, QUIET_CALL):
                everyone = everyone or kind == CALL  # membership, topics, maintenance: everyone looks
                fut: Future = op[2]
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
            elif kind == FLUSH:
                op[1].set()
        woken = None if everyone else self.appended
        if woken is None or woken:
            line = self.bus._wake_line
            if line is not None:
                line.notify_others(self.conn)
            self.bus._woken(woken)
        if self.bus._checkpointer is not None:
            self.bus._checkpointer.committed()

    def _apply(self, batch: list[tuple[Any, ...]]) -> list[Any]:
        conn = self.conn
        if self.bus.lock_wait == "retry":
            begin_immediate(conn)
        else:
            conn.execute("BEGIN IMMEDIATE")
        try:
            next_offsets: dict[tuple[str, int], int] = {}
            rows: list[tuple[Any, ...]] = []
            results: list[Any] = []
            for op in batch:
                if op[0] == APPEND:
                    _, topic, part, key, value, ts, headers = op
                    tp = (topic, part)
                    off = next_offsets.get(tp)
                    if off is None:
                        off = conn.execute(
                            "SELECT next_offset FROM partitions WHERE topic=? AND partition=?", tp
                        ).fetchone()[0]
                    rows.append((topic, part, off, key, value, ts, headers))
                    next_offsets[tp] = off + 1
                    results.append(None)
                elif op[0] == CALL or op[0] == QUIET_CALL:
                    conn.execute("SAVEPOINT call")
                    try:
                        results.append(op[1](conn))
                        conn.execute("RELEASE call")
                    except Exception as exc:  # noqa: BLE001 - any failure goes back to the caller through its future
                        conn.execute("ROLLBACK TO call")
                        conn.execute("RELEASE call")
                        results.append(exc)
                else:
                    results.append(None)
            if rows:
                conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?)", rows)
                conn.executemany(
                    "UPDATE partitions SET next_offset=? WHERE topic=? AND partition=?",
                    [(n, tp[0], tp[1]) for tp, n in next_offsets.items()],
                )
            conn.execute("COMMIT")
            self.appended = {topic for topic, _ in next_offsets}
            return results
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class EmbeddedBus:
    """The embedded bus on one SQLite file. Thread-safe; one writer thread per instance."""

    name = "embedded"

    def __init__(
        self,
        path: Path | str,
        *,
        session_timeout_ms: int = 30_000,
        maintenance_interval_s: float = 30.0,
        poll_interval_s: float = 0.05,
        shared: bool = False,
        wake: Wake = "notify",
        checkpoint: Checkpoint = "background",
        lock_wait: LockWait = "retry",
        wake_scope: WakeScope = "topic",
    ) -> None:
        """An idle consumer sleeps until a commit wakes it or ``poll_interval_s`` passes (then it
        looks anyway). This process's writer wakes it after every commit that concerns it (``wake_scope``).

        ``shared``: other processes write this file too (stages in processes of their own). With
        ``wake="notify"`` (Linux) their writers wake this process's consumers through
        ``pipeline.bus.embedded_wake``, at once and at no idle cost. ``wake="poll"`` is the older way,
        kept for comparison and for other systems: an idle consumer checks the file's data version
        every 10 ms (four idle consumers then use about 4-5 % of a core instead of 1.5 %).

        ``checkpoint``: ``background`` copies the write-ahead log into the file on a thread of its
        own (``pipeline.bus.embedded_checkpoint``); ``writer`` leaves it to SQLite inside the
        writer's commits, the older way that stalled every write for tens of milliseconds.
        ``lock_wait``: ``retry`` waits for another writer's lock in steps of 0.1-1 ms
        (``embedded_log.begin_immediate``); ``sqlite`` in SQLite's busy handler, the older way,
        whose sleeps grow to 25 ms and more.

        ``wake_scope``: ``topic`` wakes an idle consumer of this process only for a commit that
        appended to one of its topics or changed membership or topics; a commit of offsets alone, or
        a flush, wakes nobody (at 1,000 trades a second the journal's four stages were each woken
        some 1,500 times a second, mostly to find nothing). ``all`` wakes every consumer after every
        commit, the older way. Another process's commit (``notify``) wakes every consumer."""
        self.path = Path(path)
        self.shared = shared
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_s = session_timeout_ms / 3000
        self.maintenance_interval_s = maintenance_interval_s
        self.poll_interval_s = poll_interval_s
        self.undelivered = 0  # refused or failed appends not yet reported by a flush
        self.append_failures = 0  # appends the writer failed to write, ever (only read by ``behind``)
        self.wake_scope = wake_scope
        self._data = threading.Lock()  # guards the counts below; every waiter's condition uses it
        self._commits = 0
        self._everyone = 0  # commits that wake every consumer
        self._appended: dict[str, int] = {}  # per topic, commits that appended to it
        self._waits: dict[frozenset[str], threading.Condition] = {}  # per set of topics waited on
        self._topic_partitions: dict[str, int] = {}
        self._topic_cleanup: dict[str, str] = {}
        self._reader = connect(self.path)
        self._reader.executescript(SCHEMA)
        self._reader_lock = threading.Lock()
        self._wake_line: WakeLine | None = None
        self.checkpoint = checkpoint
        self.lock_wait = lock_wait
        self._checkpointer = Checkpointer(self.path) if checkpoint == "background" else None
        if self._checkpointer is not None:
            self._checkpointer.start()
        self._writer = _Writer(self)
        self._writer.start()
        if shared and wake == "notify" and wake_available():
            line = WakeLine(self._woken, address_for(self.path))
            self._call(line.register)
            self._wake_line = line

    # -- plumbing -----------------------------------------------------------------------

    def _call(self, fn: Callable[[sqlite3.Connection], Any], timeout: float = 60.0) -> Any:
        fut: Future = Future()
        self._writer.submit((CALL, fn, fut))
        return fut.result(timeout)

    def _call_nowait(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        """Queue ``fn`` for the writer thread and return at once (its result is not waited for)."""
        self._writer.submit((CALL, fn, Future()))

    def _call_quietly(
        self, fn: Callable[[sqlite3.Connection], Any], timeout: float = 60.0, *, wait: bool = True
    ) -> Any:
        """As ``_call`` (``wait=False``: as ``_call_nowait``), for a change no consumer waits for (an
        offset commit): with ``wake_scope`` ``topic`` its commit wakes nobody."""
        fut: Future = Future()
        self._writer.submit((QUIET_CALL, fn, fut))
        return fut.result(timeout) if wait else None

    @property
    def wakes_across_processes(self) -> bool:
        """True when other processes' commits wake this instance's consumers (shared, ``notify``)."""
        return self._wake_line is not None

    def commits(self, topics: Sequence[str] | None = None) -> int:
        """How many commits have woken this instance's consumers of ``topics`` so far (None: of any
        topic): its writer's and, shared, other processes'. Read it before looking for data, then
        wait for it to change (``_wait_for_data`` with the same topics): a commit in between is
        never missed."""
        with self._data:
            return self._count(topics)

    def membership_commits(self) -> int:
        """How many commits so far may have changed membership or topics (every ``CALL``: joins,
        leaves, heartbeats, topic changes; and, shared, every other process's commit). A consumer
        that saw this count unchanged since its last look at its group's generation need not look
        again (``EmbeddedConsumer``)."""
        with self._data:
            return self._everyone

    def _count(self, topics: Sequence[str] | frozenset[str] | None) -> int:
        if not topics:
            return self._commits
        return self._everyone + sum(self._appended.get(t, 0) for t in topics)

    def _woken(self, topics: set[str] | None = None) -> None:
        """Count a commit that appended to ``topics`` (None: one that concerns every consumer) and
        wake the consumers waiting for it."""
        with self._data:
            self._commits += 1
            if topics is None:
                self._everyone += 1
            else:
                for t in topics:
                    self._appended[t] = self._appended.get(t, 0) + 1
            for waited, condition in self._waits.items():
                if topics is None or not waited or not waited.isdisjoint(topics):
                    condition.notify_all()

    def _wait_for_data(self, timeout: float, seen: int, topics: Sequence[str] | None = None) -> bool:
        """Wait until ``commits(topics)`` moves past ``seen`` (True) or until ``timeout`` passes (False)."""
        key = frozenset(topics or ())  # empty: any topic
        with self._data:
            condition = self._waits.get(key)
            if condition is None:
                condition = self._waits[key] = threading.Condition(self._data)
            return condition.wait_for(lambda: self._count(key) != seen, timeout)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reader_lock:
            return self._reader.execute(sql, params).fetchall()

    def _partitions(self, topic: str) -> int:
        n = self._topic_partitions.get(topic)
        if n is None:
            row = self._read("SELECT partitions, cleanup FROM topics WHERE name=?", (topic,))
            if not row:
                raise UnknownTopicError(f"unknown topic {topic!r}: create it first (init-topics)")
            self._topic_cleanup[topic] = row[0][1]
            n = self._topic_partitions[topic] = row[0][0]
        return n

    def _maintain(self, conn: sqlite3.Connection) -> None:
        """Apply retention and compaction, as the catalog says per topic.

        Retention removes the head of each partition's log, as Kafka does: the messages before the
        first one still within retention. Finding that one walks the primary key from the head, so
        a pass reads the expired messages and one more, never the whole topic (a scan on timestamp
        read every message of every topic each pass, held the file's write lock for seconds on a
        large log and paged the whole memory-mapped file into each process that ran it)."""
        now = now_ms()
        topics = conn.execute("SELECT name, partitions, retention_ms, cleanup FROM topics").fetchall()
        for name, partitions, retention, cleanup in topics:
            if cleanup == "delete" and retention is not None and retention >= 0:
                for partition in range(partitions):
                    drop_head(conn, name, partition, now - retention)
            elif cleanup == "compact":
                conn.execute(
                    "DELETE FROM messages WHERE topic=? AND (partition, offset) IN ("
                    " SELECT partition, offset FROM (SELECT partition, offset, ROW_NUMBER() OVER ("
                    "  PARTITION BY partition, key ORDER BY offset DESC) AS rn"
                    "  FROM messages WHERE topic=? AND key IS NOT NULL) WHERE rn > 1)",
                    (name, name),
                )
            conn.execute(
                "UPDATE partitions SET start_offset=coalesce((SELECT min(offset) FROM messages m "
                "WHERE m.topic=partitions.topic AND m.partition=partitions.partition), next_offset) "
                "WHERE topic=?",
                (name,),
            )

    def run_maintenance(self) -> None:
        """Apply retention and compaction now (the writer also does it every interval)."""
        self._call(self._maintain)

    # -- the Bus contract -----------------------------------------------------------------

    def create_topics(self, specs: Iterable[TopicSpec]) -> dict[str, bool]:
        specs = list(specs)

        def create(conn: sqlite3.Connection) -> dict[str, bool]:
            created = {}
            for s in specs:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO topics VALUES (?,?,?,?,?,?)",
                    (
                        s.name,
                        s.partitions,
                        s.retention_ms,
                        s.cleanup,
                        orjson.dumps(s.kafka_config()).decode(),
                        now_ms(),
                    ),
                )
                created[s.name] = cur.rowcount == 1
                if created[s.name]:
                    conn.executemany(
                        "INSERT OR IGNORE INTO partitions VALUES (?,?,0,0)", [(s.name, p) for p in range(s.partitions)]
                    )
            return created

        return self._call(create)

    def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicState]:
        topics = self._read("SELECT name, config FROM topics ORDER BY name")
        parts: dict[str, list[PartitionState]] = {}
        for topic, p, start, end in self._read(
            "SELECT topic, partition, start_offset, next_offset FROM partitions ORDER BY 1, 2"
        ):
            parts.setdefault(topic, []).append(PartitionState(p, start, end))
        wanted = set(names) if names is not None else None
        return [
            TopicState(name, parts.get(name, []), orjson.loads(config))
            for name, config in topics
            if wanted is None or name in wanted
        ]

    def describe_groups(self) -> list[GroupState]:
        ends = {
            (t, p): (s, e)
            for t, p, s, e in self._read("SELECT topic, partition, start_offset, next_offset FROM partitions")
        }
        # A member that stopped heartbeating (its process was killed) is out of the group after the
        # session timeout, as on Kafka, even before another member's heartbeat deletes its row.
        members = dict(
            self._read(
                "SELECT group_id, count(*) FILTER (WHERE heartbeat_at >= ?) FROM members GROUP BY group_id",
                (now_ms() - self.session_timeout_ms,),
            )
        )
        groups: dict[str, list[GroupPartition]] = {}
        for group, topic, p, off in self._read(
            "SELECT group_id, topic, partition, offset FROM offsets ORDER BY 1, 2, 3"
        ):
            start, end = ends.get((topic, p), (0, 0))
            groups.setdefault(group, []).append(GroupPartition(topic, p, off, start, end))
        for group in members:
            groups.setdefault(group, [])
        return [GroupState(g, members.get(g, 0), parts) for g, parts in sorted(groups.items())]

    def delete_groups(self, group_ids: Iterable[str]) -> dict[str, str | None]:
        ids = list(dict.fromkeys(group_ids))
        timeout = self.session_timeout_ms

        def delete(conn: sqlite3.Connection) -> dict[str, str | None]:
            now = now_ms()
            outcome: dict[str, str | None] = {}
            for group in ids:
                # Members silent for the session timeout are gone, as another member's heartbeat finds.
                if conn.execute(
                    "DELETE FROM members WHERE group_id=? AND heartbeat_at<?", (group, now - timeout)
                ).rowcount:
                    bump_generation(conn, group)
                if conn.execute("SELECT 1 FROM members WHERE group_id=? LIMIT 1", (group,)).fetchone():
                    outcome[group] = GROUP_HAS_MEMBERS
                    continue
                found = conn.execute("DELETE FROM offsets WHERE group_id=?", (group,)).rowcount
                found += conn.execute("DELETE FROM groups WHERE group_id=?", (group,)).rowcount
                outcome[group] = None if found else GROUP_NOT_FOUND
            return outcome

        return self._call(delete) if ids else {}

    def _check_partition(self, topic: str, partition: int) -> None:
        count = self._partitions(topic)
        if not 0 <= partition < count:
            raise UnknownPartitionError(
                f"topic {topic!r} has partitions 0-{count - 1}; there is no partition {partition}"
            )

    def read(self, topic: str, partition: int, offset: int, max_messages: int = 100) -> list[Record]:
        self._check_partition(topic, partition)
        return read_range(self._read, topic, partition, offset, max_messages)

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        return {p: offset_for_time(self._read, topic, p, timestamp_ms) for p in range(self._partitions(topic))}

    def reset_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int]) -> str | None:
        for topic, partition in offsets:
            self._check_partition(topic, partition)
        rows = [(group_id, t, p, o, now_ms()) for (t, p), o in sorted(offsets.items())]
        timeout = self.session_timeout_ms

        def reset(conn: sqlite3.Connection) -> str | None:
            # Members silent for the session timeout are gone, as in delete_groups; the check and the
            # write are one transaction, so no consumer joins in between.
            if conn.execute(
                "DELETE FROM members WHERE group_id=? AND heartbeat_at<?", (group_id, now_ms() - timeout)
            ).rowcount:
                bump_generation(conn, group_id)
            if conn.execute("SELECT 1 FROM members WHERE group_id=? LIMIT 1", (group_id,)).fetchone():
                return GROUP_HAS_MEMBERS
            conn.executemany(
                "INSERT INTO offsets VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE SET "
                "offset=excluded.offset, committed_at=excluded.committed_at",
                rows,
            )
            return None

        result: str | None = self._call(reset)
        return result

    def producer(self, latency: Latency = "batch") -> EmbeddedProducer:
        """Every produce is handed to the writer at once, whatever ``latency`` says."""
        return EmbeddedProducer(self)

    def consumer(
        self,
        group_id: str,
        topics: Sequence[str],
        *,
        auto_offset_reset: OffsetReset = "earliest",
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        latency: Latency = "batch",
    ) -> EmbeddedConsumer:
        """A poll returns what has arrived and never waits for more, whatever ``latency`` says."""
        return EmbeddedConsumer(self, group_id, topics, auto_offset_reset, on_assign, on_revoke)

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        line, self._wake_line = self._wake_line, None
        if line is not None and self._writer.is_alive():
            with contextlib.suppress(Exception):  # the row of a closed instance is forgotten by the others anyway
                self._call(line.unregister, timeout=10)
        self._writer.stopping.set()
        self._writer.wake.set()
        self._writer.join(timeout=60)
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._reader_lock:
            self._reader.close()
        if line is not None:
            line.close()
