"""What the embedded bus's parts share: the log file's schema, the writer's operations, small codecs.

``LogFile`` is what a consumer needs of the bus (``pipeline.bus.embedded.EmbeddedBus`` is one),
so the consumer module does not import the bus module back.

``messages`` is an ordinary (rowid) table with its key (topic, partition, offset) as a unique
index, not a ``WITHOUT ROWID`` table: SQLite keeps a WITHOUT ROWID table's whole rows in its key's
B-tree, which suits rows under a twentieth of a page, and a bus message (an ml signal is about
1.2 KB) is far larger. Measured with 150 such rows a transaction, the median commit took 1.8 ms
(p90 10.9 ms, page splits) as WITHOUT ROWID and 0.8 ms (p90 1.1-1.5 ms) as rowid, and a read of
100 by offset 270 µs against 150 µs (``bench.bus --log-layout both`` compares them). A file made
before keeps its table as it is (``CREATE TABLE IF NOT EXISTS``): the queries are the same.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, retention_ms INTEGER,
    cleanup TEXT NOT NULL, config TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, start_offset INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL, key BLOB,
    value BLOB, timestamp INTEGER NOT NULL, headers BLOB,
    PRIMARY KEY (topic, partition, offset));
CREATE TABLE IF NOT EXISTS groups (group_id TEXT PRIMARY KEY, generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    group_id TEXT NOT NULL, member_id TEXT NOT NULL, topics TEXT NOT NULL,
    joined_at INTEGER NOT NULL, heartbeat_at INTEGER NOT NULL, PRIMARY KEY (group_id, member_id));
CREATE TABLE IF NOT EXISTS offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, committed_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wakers (address BLOB PRIMARY KEY, pid INTEGER NOT NULL);
"""

# The messages table as files made before this layout have it (``bench.bus --log-layout`` makes one
# to compare).
MESSAGES_WITHOUT_ROWID = """
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL, key BLOB,
    value BLOB, timestamp INTEGER NOT NULL, headers BLOB,
    PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
"""

APPEND = 0
CALL = 1
FLUSH = 2
# A call that changes nothing a consumer waits for (an offset commit): its commit wakes nobody.
QUIET_CALL = 3

LOCK_TIMEOUT_S = 30.0
_LOCK_NAPS_S = (0.0001, 0.0002, 0.0005, 0.001)


def busy(exc: sqlite3.OperationalError) -> bool:
    """True when ``exc`` says another connection holds the lock (SQLITE_BUSY)."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "locked" in str(exc)


def begin_immediate(conn: sqlite3.Connection, timeout_s: float = LOCK_TIMEOUT_S) -> None:
    """``BEGIN IMMEDIATE`` on a connection whose ``busy_timeout`` is 0, retried every 0.1-1 ms while
    another connection (another process's writer, the checkpoint thread) holds the write lock.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries, so a writer that
    meets another one holding the lock for a millisecond could sleep 25 ms: across processes that
    was most of a hop's p99 at 10,000 messages a second. Raises SQLITE_BUSY after ``timeout_s``."""
    deadline = 0.0
    attempt = 0
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not busy(exc):
                raise
            now = time.monotonic()
            if not deadline:
                deadline = now + timeout_s
            elif now >= deadline:
                raise
        time.sleep(_LOCK_NAPS_S[min(attempt, len(_LOCK_NAPS_S) - 1)])
        attempt += 1


def now_ms() -> int:
    return int(time.time() * 1000)


def encode_headers(headers: Sequence[tuple[str, bytes]] | None) -> bytes | None:
    if not headers:
        return None
    return orjson.dumps([[k, v.decode("latin-1")] for k, v in headers])


def decode_headers(blob: bytes | None) -> tuple[tuple[str, bytes], ...]:
    if blob is None:
        return ()
    return tuple((k, v.encode("latin-1")) for k, v in orjson.loads(blob))


def bump_generation(conn: sqlite3.Connection, group: str) -> None:
    conn.execute("INSERT INTO groups VALUES (?, 1) ON CONFLICT DO UPDATE SET generation=generation+1", (group,))


def drop_head(conn: sqlite3.Connection, topic: str, partition: int, before_ms: int) -> None:
    """Delete the messages of one partition before its first message stamped ``before_ms`` or later."""
    keep = conn.execute(
        "SELECT offset FROM messages WHERE topic=? AND partition=? AND timestamp>=? ORDER BY offset LIMIT 1",
        (topic, partition, before_ms),
    ).fetchone()
    if keep is None:
        conn.execute("DELETE FROM messages WHERE topic=? AND partition=?", (topic, partition))
    else:
        conn.execute("DELETE FROM messages WHERE topic=? AND partition=? AND offset<?", (topic, partition, keep[0]))


class LogFile(Protocol):
    """The members of the bus a consumer uses: its file, its settings and its writer thread."""

    path: Path
    shared: bool
    session_timeout_ms: int
    heartbeat_s: float
    poll_interval_s: float

    def _call(self, fn: Callable[[sqlite3.Connection], Any], timeout: float = 60.0) -> Any: ...

    def _call_nowait(self, fn: Callable[[sqlite3.Connection], Any]) -> None: ...

    def _call_quietly(
        self, fn: Callable[[sqlite3.Connection], Any], timeout: float = 60.0, *, wait: bool = True
    ) -> Any: ...

    def _partitions(self, topic: str) -> int: ...

    def commits(self, topics: Sequence[str] | None = None) -> int: ...

    def membership_commits(self) -> int: ...

    def _wait_for_data(self, timeout: float, seen: int, topics: Sequence[str] | None = None) -> bool: ...

    @property
    def wakes_across_processes(self) -> bool: ...
