"""Named schema migrations, applied once each in order and recorded in ``_migrations``."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

Migration = tuple[str, Callable[[sqlite_utils.Database], None]]


def _m001_market(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE ticks (
        symbol TEXT NOT NULL, timestamp INTEGER NOT NULL, price REAL NOT NULL,
        open_24h REAL, high_24h REAL, low_24h REAL, volume_24h REAL, change_pct_24h REAL,
        tick_volume REAL, PRIMARY KEY (symbol, timestamp)) WITHOUT ROWID""")
    db.execute("""CREATE TABLE bars_1m (
        symbol TEXT NOT NULL, start INTEGER NOT NULL, open REAL NOT NULL, high REAL NOT NULL,
        low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL, ticks INTEGER NOT NULL,
        PRIMARY KEY (symbol, start)) WITHOUT ROWID""")


MIGRATIONS: list[Migration] = [
    ("001_market_ticks_and_bars", _m001_market),
]


def apply_migrations(db: sqlite_utils.Database, migrations: list[Migration]) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied now."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at INTEGER)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for name, fn in migrations:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, int(time.time() * 1000)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
