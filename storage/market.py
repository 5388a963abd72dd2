"""The market tables' door: ticks and 1-minute bars (``ticks``, ``bars_1m``).

Writes run inside the caller's write transaction (``Database.write``) on its connection; reads
use the calling thread's reader connection. A tick's id is (symbol, timestamp); a bar's is
(symbol, start), and each bar touched by a write is recomputed from its stored ticks, so writing
the same ticks twice gives the same rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import pandas as pd

from storage.db import Database
from storage.sql import insert_new, upsert

MINUTE_MS = 60_000
BAR_COLUMNS = ["start", "open", "high", "low", "close", "volume", "ticks"]
TICK_COLUMNS = [
    "symbol",
    "timestamp",
    "price",
    "open_24h",
    "high_24h",
    "low_24h",
    "volume_24h",
    "change_pct_24h",
    "tick_volume",
]

# --------------------------------------------------------------------------- writes

_UPSERT_TICK = upsert("ticks", TICK_COLUMNS, "symbol, timestamp")
_UPSERT_BAR = upsert("bars_1m", ["symbol", *BAR_COLUMNS], "symbol, start")
TickRow = tuple[str, int, float, float | None, float | None, float | None, float | None, float | None, float | None]


def store_ticks(conn: sqlite3.Connection, ticks: Sequence[TickRow]) -> None:
    """Upsert ``ticks`` (rows in ``TICK_COLUMNS`` order) and recompute the bars they touch."""
    conn.executemany(_UPSERT_TICK, ticks)
    bars = []
    for symbol, start in sorted({(t[0], t[1] - t[1] % MINUTE_MS) for t in ticks}):
        rows = conn.execute(
            "SELECT price, coalesce(tick_volume, 0) FROM ticks WHERE symbol=? AND timestamp>=? "
            "AND timestamp<? ORDER BY timestamp",
            (symbol, start, start + MINUTE_MS),
        ).fetchall()
        prices = [p for p, _ in rows]
        bars.append(
            (symbol, start, prices[0], max(prices), min(prices), prices[-1], sum(v for _, v in rows), len(rows))
        )
    conn.executemany(_UPSERT_BAR, bars)


def prune_ticks(conn: sqlite3.Connection, first_minute: dict[str, int], retention_ms: int) -> None:
    """Delete each symbol's ticks older than ``retention_ms`` before its newest tick, sparing the
    minutes from ``first_minute[symbol]`` on (a bar being written needs all its ticks)."""
    for symbol, minute in first_minute.items():
        newest = conn.execute("SELECT max(timestamp) FROM ticks WHERE symbol=?", (symbol,)).fetchone()[0]
        conn.execute("DELETE FROM ticks WHERE symbol=? AND timestamp<?", (symbol, min(newest - retention_ms, minute)))


# --------------------------------------------------------------------------- reads


def symbols(db: Database) -> list[str]:
    """Return the symbols that have bars, alphabetically."""
    return [r[0] for r in db.reader().conn.execute("SELECT DISTINCT symbol FROM bars_1m ORDER BY symbol")]


def span(db: Database, symbol: str) -> tuple[int, int] | None:
    """Return the start of ``symbol``'s first and last bar, or None when it has none."""
    row = db.reader().conn.execute("SELECT min(start), max(start) FROM bars_1m WHERE symbol=?", (symbol,)).fetchone()
    return None if row[0] is None else (row[0], row[1])


def bars(db: Database, symbol: str, since_ms: int = 0, limit: int = 5000) -> pd.DataFrame:
    """Return up to ``limit`` most recent 1-minute bars of ``symbol`` since ``since_ms``, oldest
    first, with ``time`` (UTC)."""
    rows = (
        db.reader()
        .conn.execute(
            "SELECT * FROM (SELECT start, open, high, low, close, volume, ticks FROM bars_1m "
            "WHERE symbol=? AND start>=? ORDER BY start DESC LIMIT ?) AS recent ORDER BY start",
            (symbol, since_ms, limit),
        )
        .fetchall()
    )
    frame = pd.DataFrame(rows, columns=BAR_COLUMNS)
    frame["time"] = pd.to_datetime(frame["start"], unit="ms", utc=True)
    return frame


def history(db: Database, symbol: str, limit: int | None = None) -> list[tuple[int, float, float, float, float, float]]:
    """Return ``symbol``'s bars as (start, open, high, low, close, volume), oldest first: all of
    them, or the most recent ``limit``."""
    conn = db.reader().conn
    cols = "start, open, high, low, close, volume"
    if limit is None:
        return conn.execute(f"SELECT {cols} FROM bars_1m WHERE symbol=? ORDER BY start", (symbol,)).fetchall()
    return conn.execute(
        f"SELECT * FROM (SELECT {cols} FROM bars_1m WHERE symbol=? ORDER BY start DESC LIMIT ?) AS recent "
        "ORDER BY start",
        (symbol, int(limit)),
    ).fetchall()


def before(
    db: Database, symbol: str, before_ms: int, *, after_ms: int = -1, limit: int
) -> list[tuple[int, float, float, float, float]]:
    """Return the last ``limit`` bars of ``symbol`` that start in (``after_ms``, ``before_ms``) as
    (start, high, low, close, volume), oldest first."""
    rows = (
        db.reader()
        .conn.execute(
            "SELECT start, high, low, close, volume FROM bars_1m WHERE symbol=? AND start<? AND start>? "
            "ORDER BY start DESC LIMIT ?",
            (symbol, before_ms, after_ms, limit),
        )
        .fetchall()
    )
    rows.reverse()
    return rows


def closes_until(db: Database, symbol: str, at_ms: int, limit: int) -> list[tuple[int, float]]:
    """Return the last ``limit`` (start, close) of ``symbol`` starting at or before ``at_ms``, newest first."""
    return (
        db.reader()
        .conn.execute(
            "SELECT start, close FROM bars_1m WHERE symbol=? AND start<=? ORDER BY start DESC LIMIT ?",
            (symbol, at_ms, limit),
        )
        .fetchall()
    )


def close_between(db: Database, symbol: str, lo_ms: int, hi_ms: int) -> float | None:
    """Return the close of ``symbol``'s last bar that starts in [``lo_ms``, ``hi_ms``], or None."""
    row = (
        db.reader()
        .conn.execute(
            "SELECT close FROM bars_1m WHERE symbol=? AND start<=? AND start>=? ORDER BY start DESC LIMIT 1",
            (symbol, hi_ms, lo_ms),
        )
        .fetchone()
    )
    return row[0] if row else None


def between(db: Database, symbols: Sequence[str], since_ms: int, until_ms: int) -> pd.DataFrame:
    """Return the closes of ``symbols``' bars starting in [``since_ms``, ``until_ms``]: columns
    ``symbol``, ``start``, ``close``, by start."""
    if not symbols:
        return pd.DataFrame(columns=["symbol", "start", "close"])
    marks = ",".join("?" * len(symbols))
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT symbol, start, close FROM bars_1m WHERE symbol IN ({marks}) AND start>=? AND start<=? "
            "ORDER BY start",
            (*symbols, since_ms, until_ms),
        )
        .fetchall()
    )
    return pd.DataFrame(rows, columns=["symbol", "start", "close"])


def ohlc_between(db: Database, symbol: str, since_ms: int, until_ms: int) -> pd.DataFrame:
    """Return ``symbol``'s bars starting in [``since_ms``, ``until_ms``] as ``start, open, high, low,
    close``, oldest first."""
    rows = (
        db.reader()
        .conn.execute(
            "SELECT start, open, high, low, close FROM bars_1m WHERE symbol=? AND start>=? AND start<=? ORDER BY start",
            (symbol, since_ms, until_ms),
        )
        .fetchall()
    )
    return pd.DataFrame(rows, columns=["start", "open", "high", "low", "close"])


def newest_bars(db: Database) -> dict[str, int]:
    """Return each symbol's newest bar start."""
    return dict(db.reader().conn.execute("SELECT symbol, max(start) FROM bars_1m GROUP BY symbol").fetchall())


def add_bars(
    conn: sqlite3.Connection, symbol: str, rows: Sequence[tuple[int, float, float, float, float, float]]
) -> int:
    """Store fetched or replayed bars (start, open, high, low, close, volume) of ``symbol`` where the
    store has none; bars made from ticks are never replaced. Returns how many were added."""
    return conn.executemany(insert_new("bars_1m", ["symbol", *BAR_COLUMNS]), [(symbol, *r, 0) for r in rows]).rowcount


def latest_ticks(db: Database) -> pd.DataFrame:
    """Return the last tick of every symbol."""
    rows = (
        db.reader()
        .conn.execute(
            "SELECT t.* FROM ticks t JOIN (SELECT symbol, max(timestamp) AS ts FROM ticks GROUP BY symbol) l "
            "ON t.symbol=l.symbol AND t.timestamp=l.ts ORDER BY t.symbol"
        )
        .fetchall()
    )
    return pd.DataFrame(rows, columns=TICK_COLUMNS)


def price_at(conn: sqlite3.Connection, symbol: str, at_ms: int, max_age_ms: int) -> float | None:
    """Return ``symbol``'s last tick price at or before ``at_ms`` and at most ``max_age_ms`` older,
    or None. Takes a connection: the normalizer asks inside its write transaction."""
    row = conn.execute(
        "SELECT price FROM ticks WHERE symbol=? AND timestamp<=? AND timestamp>=? ORDER BY timestamp DESC LIMIT 1",
        (symbol, at_ms, at_ms - max_age_ms),
    ).fetchone()
    return row[0] if row else None


def buy_and_hold(db: Database, symbols: list[str], since_ms: int, until_ms: int, balance: float) -> pd.DataFrame:
    """Return the value of ``balance`` split equally over ``symbols`` at ``since_ms`` and held until
    ``until_ms``, on the 1-minute bars' closes: columns ``timestamp`` (bar start), ``value`` and ``time``.
    Empty when a symbol has no bar in the period."""
    first = since_ms // MINUTE_MS * MINUTE_MS
    empty = pd.DataFrame({"timestamp": pd.Series(dtype="int64"), "value": pd.Series(dtype=float)})
    empty["time"] = pd.to_datetime(empty["timestamp"], unit="ms", utc=True)
    if not symbols or until_ms < first:
        return empty
    rows = between(db, symbols, first, until_ms)
    if rows.empty:
        return empty
    closes = rows.pivot_table(index="start", columns="symbol", values="close").sort_index()
    if set(closes.columns) != set(symbols):
        return empty
    closes = closes.ffill().dropna()
    if closes.empty:
        return empty
    growth = closes / closes.iloc[0]
    out = pd.DataFrame({"timestamp": growth.index.astype("int64"), "value": (growth.mean(axis=1) * balance).to_numpy()})
    out["time"] = pd.to_datetime(out["timestamp"], unit="ms", utc=True)
    return out


def resampled(
    db: Database, symbol: str, bucket_ms: int, since_ms: int, until_ms: int, limit: int
) -> list[tuple[int, float, float, float, float, float]]:
    """Return ``symbol``'s bars of ``bucket_ms`` (a multiple of a minute; buckets start on the UTC
    clock) made from the 1-minute bars starting in [``since_ms``, ``until_ms``), as (start, open,
    high, low, close, volume): the newest ``limit`` buckets, oldest first."""
    b = int(bucket_ms)
    rows = (
        db.reader()
        .conn.execute(
            f"""SELECT g.b, o.open, g.h, g.l, c.close, g.v FROM (
                SELECT (start / {b}) * {b} AS b, min(start) AS f, max(start) AS la, max(high) AS h, min(low) AS l,
                       sum(volume) AS v
                FROM bars_1m WHERE symbol = ? AND start >= ? AND start < ? GROUP BY b ORDER BY b DESC LIMIT ?) AS g
            JOIN bars_1m AS o ON o.symbol = ? AND o.start = g.f
            JOIN bars_1m AS c ON c.symbol = ? AND c.start = g.la
            ORDER BY g.b""",
            (symbol, since_ms, until_ms, limit, symbol, symbol),
        )
        .fetchall()
    )
    return rows


def bars_between(
    db: Database, symbol: str, start_ms: int, end_ms: int, limit: int
) -> list[tuple[int, float, float, float, float, float]]:
    """Return the first ``limit`` 1-minute bars of ``symbol`` starting in [``start_ms``, ``end_ms``)
    as (start, open, high, low, close, volume), oldest first."""
    return (
        db.reader()
        .conn.execute(
            "SELECT start, open, high, low, close, volume FROM bars_1m WHERE symbol=? AND start>=? AND start<? "
            "ORDER BY start LIMIT ?",
            (symbol, start_ms, end_ms, limit),
        )
        .fetchall()
    )
