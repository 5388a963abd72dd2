"""The stock tables' door: trades (``stock_trades``) and bars (``stock_bars``) in four timeframes.

Writes run inside the caller's write transaction (``Database.write``) on its connection; reads use
the calling thread's reader connection. Both writes are idempotent:

* a trade's id is (symbol, timestamp, trade_id): writing it again changes nothing;
* a bar's id is (symbol, timeframe, start): a bar written again (an Alpaca "updated bar", a
  replay) replaces the row, and the 5Min, 1Hour and 1Day bars that contain a written 1Min bar are
  recomputed from the stored 1Min bars, so the same bars in any order or number give the same rows.

Timeframes are ``1Min``, ``5Min``, ``1Hour`` and ``1Day``. Minute and hour buckets start on the
clock (UTC, which for whole hours is also New York time); a day runs from midnight to midnight in
America/New_York, the exchange's day (its start is stored, as Alpaca stamps daily bars). A feed's
own daily bar (Alpaca's, a Yahoo daily file) is kept as it came and is never overwritten by the
resampled one.

Reads are index range scans on the primary keys: the latest N bars, a time range, the latest bar
of every symbol. Callers (the API, the Stocks page, the analysis of stocks) get plain tuples in
``BAR_FIELDS`` / ``TRADE_FIELDS`` order, oldest first.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import orjson

from storage.db import Database

Timeframe = Literal["1Min", "5Min", "1Hour", "1Day"]
TIMEFRAMES: dict[str, int] = {"1Min": 60_000, "5Min": 300_000, "1Hour": 3_600_000, "1Day": 86_400_000}
EXCHANGE_TZ = ZoneInfo("America/New_York")

BAR_FIELDS = ("start", "open", "high", "low", "close", "volume", "trade_count", "vwap")
TRADE_FIELDS = ("symbol", "timestamp", "trade_id", "price", "size", "exchange", "conditions", "tape", "collected_at")

# (symbol, timestamp, trade_id, price, size, exchange, conditions, tape, collected_at)
TradeRow = tuple[str, int, int, float, float, str | None, Sequence[str], str | None, int]
# (symbol, timeframe "1Min" or "1Day", start, open, high, low, close, volume, trade_count, vwap)
BarRow = tuple[str, str, int, float, float, float, float, float, int | None, float | None]
Bar = tuple[int, float, float, float, float, float, int | None, float | None]


@functools.lru_cache(maxsize=4096)
def _day_bounds(date_ordinal: int) -> tuple[int, int]:
    day = datetime.fromordinal(date_ordinal)
    start = day.replace(tzinfo=EXCHANGE_TZ)
    end = (day + timedelta(days=1)).replace(tzinfo=EXCHANGE_TZ)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def day_start(ms: int) -> int:
    """Return the start (Unix ms) of the New York day that holds ``ms``."""
    local = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(EXCHANGE_TZ)
    return _day_bounds(local.date().toordinal())[0]


def bucket_start(ms: int, timeframe: str) -> int:
    """Return the start of the ``timeframe`` bar that holds ``ms``."""
    if timeframe == "1Day":
        return day_start(ms)
    size = TIMEFRAMES[timeframe]
    return ms - ms % size


# --------------------------------------------------------------------------- writes


def store_trades(conn: sqlite3.Connection, rows: Iterable[TradeRow]) -> int:
    """Insert trades not stored yet; return how many rows were new."""
    return conn.executemany(
        "INSERT INTO stock_trades VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        [
            (s, ts, i, p, q, x, orjson.dumps(list(c)).decode() if c else "[]", z, at)
            for s, ts, i, p, q, x, c, z, at in rows
        ],
    ).rowcount


_UPSERT = (
    "INSERT INTO stock_bars VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (symbol, timeframe, start) DO UPDATE SET "
    "open=excluded.open, high=excluded.high, low=excluded.low, close=excluded.close, volume=excluded.volume, "
    "trade_count=excluded.trade_count, vwap=excluded.vwap, derived=excluded.derived"
)

# The bars of a timeframe resampled from the 1Min bars in [?, ?) of one symbol. A bucket's open and
# close are those of its first and last minute (joined back by their starts).
_RESAMPLE = """
INSERT INTO stock_bars
SELECT :symbol, :timeframe, g.b, o.open, g.h, g.l, c.close, g.v, g.n, g.pv / g.vv, 1
FROM (SELECT {bucket} AS b, min(start) AS f, max(start) AS la, max(high) AS h, min(low) AS l, sum(volume) AS v,
             sum(trade_count) AS n, sum(vwap * volume) AS pv, sum(CASE WHEN vwap IS NOT NULL THEN volume END) AS vv
      FROM stock_bars WHERE symbol = :symbol AND timeframe = '1Min' AND start >= :lo AND start < :hi GROUP BY b) AS g
JOIN stock_bars AS o ON o.symbol = :symbol AND o.timeframe = '1Min' AND o.start = g.f
JOIN stock_bars AS c ON c.symbol = :symbol AND c.timeframe = '1Min' AND c.start = g.la
WHERE true
ON CONFLICT (symbol, timeframe, start) DO UPDATE SET
    open=excluded.open, high=excluded.high, low=excluded.low, close=excluded.close, volume=excluded.volume,
    trade_count=excluded.trade_count, vwap=excluded.vwap
WHERE stock_bars.derived = 1
"""


def store_bars(conn: sqlite3.Connection, rows: Sequence[BarRow]) -> None:
    """Upsert the feed's bars (1Min or 1Day) and recompute the resampled bars they touch."""
    conn.executemany(_UPSERT, [(*r, 0) for r in rows])
    spans: dict[str, tuple[int, int]] = {}
    days: set[tuple[str, int]] = set()
    for symbol, timeframe, start, *_ in rows:
        if timeframe != "1Min":
            continue
        lo, hi = spans.get(symbol, (start, start))
        spans[symbol] = (min(lo, start), max(hi, start))
        days.add((symbol, day_start(start)))
    for symbol, (lo, hi) in spans.items():
        for timeframe in ("5Min", "1Hour"):
            size = TIMEFRAMES[timeframe]
            conn.execute(
                _RESAMPLE.format(bucket=f"(start / {size}) * {size}"),
                {"symbol": symbol, "timeframe": timeframe, "lo": lo - lo % size, "hi": hi - hi % size + size},
            )
    for symbol, start in sorted(days):
        end = day_start(start + 30 * 3_600_000)  # the next New York midnight (days are 23 to 25 hours)
        conn.execute(
            _RESAMPLE.format(bucket=str(start)), {"symbol": symbol, "timeframe": "1Day", "lo": start, "hi": end}
        )


# --------------------------------------------------------------------------- reads


def symbols(db: Database) -> list[str]:
    """Return the symbols that have bars or trades, alphabetically."""
    conn = db.reader().conn
    found = {r[0] for r in conn.execute("SELECT DISTINCT symbol FROM stock_bars")}
    found |= {r[0] for r in conn.execute("SELECT DISTINCT symbol FROM stock_trades")}
    return sorted(found)


def has_symbol(db: Database, symbol: str) -> bool:
    """Return True when ``symbol`` has any stock bar or trade."""
    conn = db.reader().conn
    return bool(
        conn.execute("SELECT 1 FROM stock_bars WHERE symbol=? LIMIT 1", (symbol,)).fetchone()
        or conn.execute("SELECT 1 FROM stock_trades WHERE symbol=? LIMIT 1", (symbol,)).fetchone()
    )


def bars(db: Database, symbol: str, timeframe: str = "1Min", limit: int = 500) -> list[Bar]:
    """Return the latest ``limit`` bars of ``symbol`` in ``timeframe``, oldest first."""
    rows = (
        db.reader()
        .conn.execute(
            "SELECT start, open, high, low, close, volume, trade_count, vwap FROM stock_bars "
            "WHERE symbol=? AND timeframe=? ORDER BY start DESC LIMIT ?",
            (symbol, timeframe, limit),
        )
        .fetchall()
    )
    rows.reverse()
    return rows


def bars_range(db: Database, symbol: str, timeframe: str, start_ms: int, end_ms: int, limit: int) -> list[Bar]:
    """Return up to ``limit`` bars of ``symbol`` starting in [``start_ms``, ``end_ms``), oldest first."""
    return (
        db.reader()
        .conn.execute(
            "SELECT start, open, high, low, close, volume, trade_count, vwap FROM stock_bars "
            "WHERE symbol=? AND timeframe=? AND start>=? AND start<? ORDER BY start LIMIT ?",
            (symbol, timeframe, start_ms, end_ms, limit),
        )
        .fetchall()
    )


def latest_bars(db: Database, timeframe: str = "1Min") -> list[tuple[object, ...]]:
    """Return the latest ``timeframe`` bar of every symbol as (symbol, *BAR_FIELDS), by symbol."""
    conn = db.reader().conn
    out = []
    for (symbol,) in conn.execute("SELECT DISTINCT symbol FROM stock_bars WHERE timeframe=?", (timeframe,)).fetchall():
        row = conn.execute(
            "SELECT symbol, start, open, high, low, close, volume, trade_count, vwap FROM stock_bars "
            "WHERE symbol=? AND timeframe=? ORDER BY start DESC LIMIT 1",
            (symbol, timeframe),
        ).fetchone()
        out.append(row)
    return sorted(out)


def latest_trades(db: Database) -> dict[str, dict[str, object]]:
    """Return the last stored trade of every symbol, by symbol (``TRADE_FIELDS`` as keys)."""
    conn = db.reader().conn
    out: dict[str, dict[str, object]] = {}
    for (symbol,) in conn.execute("SELECT DISTINCT symbol FROM stock_trades").fetchall():
        row = conn.execute(
            f"SELECT {', '.join(TRADE_FIELDS)} FROM stock_trades WHERE symbol=? ORDER BY timestamp DESC, trade_id DESC "
            "LIMIT 1",
            (symbol,),
        ).fetchone()
        trade = dict(zip(TRADE_FIELDS, row))
        trade["conditions"] = orjson.loads(str(trade["conditions"]))
        out[symbol] = trade
    return out


def trades(db: Database, symbol: str, limit: int = 100) -> list[dict[str, object]]:
    """Return the latest ``limit`` stored trades of ``symbol``, newest first."""
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join(TRADE_FIELDS)} FROM stock_trades WHERE symbol=? ORDER BY timestamp DESC, trade_id DESC "
            "LIMIT ?",
            (symbol, limit),
        )
        .fetchall()
    )
    out = [dict(zip(TRADE_FIELDS, r)) for r in rows]
    for t in out:
        t["conditions"] = orjson.loads(str(t["conditions"]))
    return out


def trade_count(db: Database) -> int:
    """Return how many trades are stored (every symbol)."""
    return int(db.reader().conn.execute("SELECT count(*) FROM stock_trades").fetchone()[0])


def bar_count(db: Database, timeframe: str = "1Min") -> int:
    """Return how many ``timeframe`` bars are stored (every symbol)."""
    return int(
        db.reader().conn.execute("SELECT count(*) FROM stock_bars WHERE timeframe=?", (timeframe,)).fetchone()[0]
    )
