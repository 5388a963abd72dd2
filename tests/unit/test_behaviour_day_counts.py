"""The behaviour stage's entries per quarter hour (``behaviour_day_counts``): always what counting the
stored rows gives, kept through upserts, moves, voids and replays, filled in by the migration for
rows stored before it, and read at a cost that does not grow with the day's entries.

Cost is counted in SQLite virtual-machine steps (a progress handler), never in seconds.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

import sqlite_utils

from pipeline.journal.behaviour_book import Row
from storage import behaviour
from storage.db import Database
from storage.migrations import MIGRATIONS, apply_migrations
from tests.sqlite_steps import steps as sqlite_steps

DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
Q = behaviour.BUCKET_MS


def row(tid: str, entry_time: int, user: str = "ann", kind: str = "trade") -> Row:
    return Row(user, tid, kind, "BTCUSDT", "BUY", tid, entry_time, entry_time + 60_000, 100.0, 1.0, 1.0)  # type: ignore[arg-type]


def counted(conn: sqlite3.Connection, user: str, lo: int, hi: int) -> Counter[int]:
    """Entries per quarter counted from the rows themselves (what the kept counts must equal)."""
    sql = (
        f"SELECT entry_time / {Q}, count(*) FROM behaviour_trades WHERE user_id = ? AND kind != 'round_trip'"
        " AND entry_time >= ? AND entry_time < ? GROUP BY 1"
    )
    return Counter(dict(conn.execute(sql, (user, lo, hi))))


def write(db: Database, rows: list[Row], voided: list[str]) -> None:
    db.write(lambda d: behaviour.store(d.conn, rows, voided))


def summed(pairs: list[tuple[int, int]]) -> Counter[int]:
    out: Counter[int] = Counter()
    for q, n in pairs:
        out[q] += n
    return +out


def test_kept_counts_equal_the_rows_through_upserts_moves_voids_and_replays(store: Database) -> None:
    db = store  # on SQLite and on the tests' PostgreSQL: the kept counts' upsert is in both dialects
    rnd = random.Random(15)
    stored: dict[str, Row] = {}
    for _ in range(60):
        rows: list[Row] = []
        voided: list[str] = []
        for _ in range(rnd.randint(1, 40)):
            tid = f"t{rnd.randrange(300)}"
            if tid in stored and rnd.random() < 0.15:
                voided.append(tid)
                continue
            t = T0 + rnd.randrange(3 * DAY_MS)  # a replay or a rebuilt FIFO moves a known id
            kind = rnd.choice(["trade", "lot", "round_trip"])
            rows.append(row(tid, t, user=rnd.choice(["ann", "bob"]), kind=kind))
        rows += rnd.sample(rows, min(3, len(rows)))  # the same record twice in one batch
        write(db, rows, voided)
        for tid in voided:
            stored.pop(tid, None)
        stored.update({r.trade_id: r for r in rows})
    conn = db.reader().conn
    assert conn.execute("SELECT count(*) FROM behaviour_trades").fetchone()[0] == len(stored)
    for user in ("ann", "bob"):
        # whole days, and bounds that cut a quarter hour at either end
        for lo, hi in [(T0, T0 + 3 * DAY_MS), (T0 + 7 * 60_000, T0 + 2 * DAY_MS + 123_456), (T0 + 1, T0 + Q - 1)]:
            assert summed(behaviour.day_counts(conn, user, lo, hi)) == counted(conn, user, lo, hi), (user, lo, hi)


def test_the_migration_counts_the_rows_stored_before_it(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    conn = sqlite3.connect(path, isolation_level=None)
    before = [m for m in MIGRATIONS if m[0] < "013"]
    apply_migrations(sqlite_utils.Database(conn), before)
    conn.executemany(
        f"INSERT INTO behaviour_trades ({behaviour.COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [row(f"t{i}", T0 + i * 7 * 60_000, kind="round_trip" if i % 5 == 0 else "lot") for i in range(400)],
    )
    assert "014_behaviour_day_counts" in apply_migrations(sqlite_utils.Database(conn), MIGRATIONS)
    lo, hi = T0, T0 + 2 * DAY_MS
    assert summed(behaviour.day_counts(conn, "ann", lo, hi)) == counted(conn, "ann", lo, hi)
    assert sum(summed(behaviour.day_counts(conn, "ann", lo, hi)).values()) == 320
    conn.close()


def steps(conn: sqlite3.Connection, user: str, lo: int, hi: int) -> int:
    """SQLite virtual-machine steps (in hundreds) one ``day_counts`` call takes."""
    return sqlite_steps(conn, lambda: behaviour.day_counts(conn, user, lo, hi))[0]


def test_counting_a_day_costs_the_same_with_200_entries_or_20000(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    day = [row(f"a{i}", T0 + i * 4_000, user="ann") for i in range(200)]
    busy = [row(f"b{i}", T0 + i * 4_000, user="bob") for i in range(20_000)]  # the soak's users fill a day
    db.write(lambda d: behaviour.store(d.conn, day + busy, []))
    conn = db.reader().conn
    lo, hi = T0 - 15 * DAY_MS, T0 + 2 * DAY_MS
    few, many = steps(conn, "ann", lo, hi), steps(conn, "bob", lo, hi)
    # Counting the rows costs about 100 times as much for 100 times the entries.
    assert many < 2 * few + 10, (few, many)
    assert sum(n for _, n in behaviour.day_counts(conn, "bob", lo, hi)) == 20_000
    db.close()
