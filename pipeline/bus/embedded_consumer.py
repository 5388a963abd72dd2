"""A member of a consumer group on the embedded log: joins, heartbeats, rebalances, polls, commits.

It reads with a connection of its own and writes (membership, offsets) through the bus's writer
thread, so its commits are ordered with everything else the process writes.

A poll's fixed cost matters at a thousand small batches a second (the journal's stages): a stage
reads its inputs and their three delay topics, 12-24 partitions, nearly all empty. A fetch
therefore asks in one query which partitions have something past its position, and reads only
those (2 queries and 1 row more for one busy partition, instead of 24 queries; same snapshot, same
records in the same order). Under a busy interpreter the count of rows SQLite steps through
matters more than the work: each step lets another thread take the interpreter's lock. And a
poll looks at its group's generation only when a commit that may have changed membership
happened since its last look (``EmbeddedBus.membership_commits``), or ``poll_interval_s`` has
passed; on a shared file, where another process's join need not wake this one, it looks every
poll as before.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence

import orjson

from pipeline.bus.base import OffsetReset, PartitionsCallback, Record
from pipeline.bus.embedded_log import LogFile, bump_generation, decode_headers, now_ms
from pipeline.errors import CommitFailedError
from storage.db import connect

log = logging.getLogger(__name__)


class EmbeddedConsumer:
    """A member of a consumer group on the embedded log. Use from one thread only."""

    def __init__(
        self,
        bus: LogFile,
        group_id: str,
        topics: Sequence[str],
        auto_offset_reset: OffsetReset,
        on_assign: PartitionsCallback | None,
        on_revoke: PartitionsCallback | None,
    ) -> None:
        for topic in topics:
            bus._partitions(topic)
        self.group_id = group_id
        self.member_id = f"{group_id}-{uuid.uuid4().hex[:12]}"
        self._bus = bus
        self._topics = list(topics)
        self._reset = auto_offset_reset
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._conn = connect(bus.path)
        self._ready_sql: dict[int, str] = {}  # per number of partitions assigned
        self._generation: int | None = None
        self._membership_seen: int | None = None  # membership_commits() at the last look at the generation
        self._next_membership_look = 0.0
        self._positions: dict[tuple[str, int], int] = {}
        self._next_partition = 0
        self._last_heartbeat = 0.0
        self._closed = False
        self._commit_failed: Exception | None = None  # an asynchronous commit's failure, raised by the next
        self._join()

    # -- group membership -------------------------------------------------------------

    def _join(self) -> None:
        member, group, topics = self.member_id, self.group_id, orjson.dumps(self._topics).decode()

        def join(conn: sqlite3.Connection) -> None:
            now = now_ms()
            conn.execute("INSERT OR REPLACE INTO members VALUES (?,?,?,?,?)", (group, member, topics, now, now))
            bump_generation(conn, group)

        self._bus._call(join)
        self._last_heartbeat = time.monotonic()

    def _heartbeat(self) -> None:
        if time.monotonic() - self._last_heartbeat < self._bus.heartbeat_s:
            return
        self._last_heartbeat = time.monotonic()
        group, member, timeout = self.group_id, self.member_id, self._bus.session_timeout_ms

        def beat(conn: sqlite3.Connection) -> None:
            now = now_ms()
            conn.execute("UPDATE members SET heartbeat_at=? WHERE group_id=? AND member_id=?", (now, group, member))
            expired = conn.execute(
                "DELETE FROM members WHERE group_id=? AND heartbeat_at<?", (group, now - timeout)
            ).rowcount
            if expired:
                bump_generation(conn, group)

        self._bus._call_nowait(beat)

    def _rebalance_if_needed(self) -> None:
        row = self._conn.execute("SELECT generation FROM groups WHERE group_id=?", (self.group_id,)).fetchone()
        generation = row[0] if row else None
        if generation == self._generation:
            return
        members = self._conn.execute(
            "SELECT member_id, topics FROM members WHERE group_id=? ORDER BY joined_at, member_id", (self.group_id,)
        ).fetchall()
        if self.member_id not in {m for m, _ in members}:  # expelled after a long pause: rejoin
            self._join()
            return self._rebalance_if_needed()
        new = set(self._assign(members))
        old = set(self._positions)
        revoked, added = sorted(old - new), sorted(new - old)
        if revoked:
            if self._on_revoke:
                self._on_revoke(revoked)
            for tp in revoked:
                del self._positions[tp]
        for tp in added:
            self._positions[tp] = self._start_position(tp)
        if added and self._on_assign:
            self._on_assign(added)
        self._generation = generation

    def _assign(self, members: list[tuple[str, str]]) -> list[tuple[str, int]]:
        """Range assignment, as Kafka's RangeAssignor: per topic, contiguous slices by member."""
        mine: list[tuple[str, int]] = []
        for topic in self._topics:
            subscribers = [m for m, topics in members if topic in orjson.loads(topics)]
            n = self._bus._partitions(topic)
            index = subscribers.index(self.member_id)
            per, extra = divmod(n, len(subscribers))
            start = index * per + min(index, extra)
            count = per + (1 if index < extra else 0)
            mine.extend((topic, p) for p in range(start, start + count))
        return mine

    def _start_position(self, tp: tuple[str, int]) -> int:
        row = self._conn.execute(
            "SELECT offset FROM offsets WHERE group_id=? AND topic=? AND partition=?", (self.group_id, *tp)
        ).fetchone()
        if row:
            return row[0]
        start, end = self._conn.execute(
            "SELECT start_offset, next_offset FROM partitions WHERE topic=? AND partition=?", tp
        ).fetchone()
        return start if self._reset == "earliest" else end

    # -- consuming --------------------------------------------------------------------

    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            self._heartbeat()
            if self._membership_may_have_changed():
                self._rebalance_if_needed()
            seen = self._bus.commits(self._topics)
            version = self._data_version() if self._watches_file() else 0
            records = self._fetch(max_messages)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return records
            self._wait(seen, version, min(remaining, self._bus.poll_interval_s))

    def _membership_may_have_changed(self) -> bool:
        """False when no commit that may change membership (``EmbeddedBus.membership_commits``) has
        happened since the last look at the group's generation, and that look is under
        ``poll_interval_s`` old; True on a shared file (another process's join may wake nobody here).

        The count is read before the look it allows, so a change committed after that look moves it."""
        if self._bus.shared:
            return True
        count, now = self._bus.membership_commits(), time.monotonic()
        if count == self._membership_seen and now < self._next_membership_look:
            return False
        self._membership_seen, self._next_membership_look = count, now + self._bus.poll_interval_s
        return True

    def _watches_file(self) -> bool:
        """True when another process's commit can only be seen by watching the file (shared, poll)."""
        return self._bus.shared and not self._bus.wakes_across_processes

    def _data_version(self) -> int:
        """SQLite's count of commits by other connections to the file (this process's writer included)."""
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _wait(self, seen: int, version: int, timeout: float) -> bool:
        """Wait up to ``timeout`` for a commit after the count ``seen`` (of commits that appended to
        this consumer's topics or changed membership: ``EmbeddedBus.commits``); return True when one
        woke us, False when the time ran out. This process's writer wakes us at once, and so does another
        process's on a shared bus that notifies (``pipeline.bus.embedded_wake``). On a shared bus
        that polls, a commit by another process is seen within 10 ms by the file's data version
        (``version``, read before the fetch), a check far cheaper than a fetch."""
        if not self._watches_file():
            return self._bus._wait_for_data(timeout, seen, self._topics)
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            if self._bus._wait_for_data(min(left, 0.01), seen, self._topics) or self._data_version() != version:
                return True

    def _fetch(self, max_messages: int) -> list[Record]:
        """Read from the assigned partitions, in one read transaction: one snapshot of the file, and
        half the cost of a transaction per partition's query (each takes and drops a WAL read lock)."""
        parts = list(self._positions)
        if not parts:
            return []
        self._conn.execute("BEGIN")
        try:
            return self._fetch_from(parts, max_messages)
        finally:
            self._conn.execute("COMMIT")

    def _fetch_from(self, parts: list[tuple[str, int]], max_messages: int) -> list[Record]:
        """Read, from the partition after the last poll's first on, each partition with messages
        past its position (their ends read first, in the same snapshot), up to ``max_messages``."""
        ready = self._ready(parts)
        records: list[Record] = []
        n = len(parts)
        for i in range(n):
            if len(records) >= max_messages:
                break
            tp = parts[(self._next_partition + i) % n]
            if tp not in ready:
                continue  # nothing past its position
            rows = self._conn.execute(
                "SELECT offset, key, value, timestamp, headers FROM messages "
                "WHERE topic=? AND partition=? AND offset>=? ORDER BY offset LIMIT ?",
                (tp[0], tp[1], self._positions[tp], max_messages - len(records)),
            ).fetchall()
            if rows:
                topic, part = tp
                records.extend(
                    Record(topic, part, off, key, value, ts, decode_headers(h)) for off, key, value, ts, h in rows
                )
                self._positions[tp] = rows[-1][0] + 1
        self._next_partition = (self._next_partition + 1) % n
        return records

    def _ready(self, parts: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """The partitions of ``parts`` with messages past this consumer's position, in one query that
        returns only those: under a busy interpreter each row SQLite steps through gives the lock
        away, so a row per empty partition cost more than the query."""
        sql = self._ready_sql.get(len(parts))
        if sql is None:
            values = ", ".join(["(?, ?, ?)"] * len(parts))
            sql = self._ready_sql[len(parts)] = (
                f"SELECT p.topic, p.partition FROM (VALUES {values}) AS v JOIN partitions AS p "
                "ON p.topic = v.column1 AND p.partition = v.column2 WHERE p.next_offset > v.column3"
            )
        params = [x for tp in parts for x in (tp[0], tp[1], self._positions[tp])]
        return {(t, p) for t, p in self._conn.execute(sql, params)}

    def commit(self, records: Iterable[Record] | None = None, *, asynchronous: bool = False) -> None:
        failed, self._commit_failed = self._commit_failed, None
        if failed is not None:
            raise failed
        if records is None:
            offsets = dict(self._positions)
        else:
            offsets = {}
            for r in records:
                tp = (r.topic, r.partition)
                if r.offset + 1 > offsets.get(tp, -1):
                    offsets[tp] = r.offset + 1
        if not offsets:
            return
        group, member = self.group_id, self.member_id
        rows = [(group, tp[0], tp[1], off, now_ms()) for tp, off in offsets.items()]

        def commit(conn: sqlite3.Connection) -> None:
            if not conn.execute("SELECT 1 FROM members WHERE group_id=? AND member_id=?", (group, member)).fetchone():
                raise CommitFailedError(f"{member} is no longer in group {group}: not committed")
            conn.executemany(
                "INSERT INTO offsets VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE SET "
                "offset=max(offset, excluded.offset), committed_at=excluded.committed_at",
                rows,
            )

        if not asynchronous:
            self._bus._call_quietly(commit)  # offsets wake no consumer: none waits for them
            return

        def commit_later(conn: sqlite3.Connection) -> None:
            # The writer applies it after every output produced before it, in that order.
            try:
                commit(conn)
            except Exception as exc:  # noqa: BLE001 - raised on the consumer's thread by its next commit
                self._commit_failed = exc

        self._bus._call_quietly(commit_later, wait=False)

    def assignment(self) -> list[tuple[str, int]]:
        return sorted(self._positions)

    def lag(self) -> int:
        total = 0
        for (topic, part), pos in self._positions.items():
            end = self._conn.execute(
                "SELECT next_offset FROM partitions WHERE topic=? AND partition=?", (topic, part)
            ).fetchone()[0]
            total += max(end - pos, 0)
        return total

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        group, member = self.group_id, self.member_id

        def leave(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM members WHERE group_id=? AND member_id=?", (group, member)).rowcount:
                bump_generation(conn, group)

        try:
            self._bus._call(leave)
        finally:
            self._conn.close()
