"""MFE, MAE and R of closed round trips, first all of them, then incrementally.

    python -m bench.excursions [--trades 100000] [--symbols 5] [--new 100]

A store is filled with ``--trades`` closed round trips spread over ``--symbols`` symbols and the
1-minute bars under them (each trade lasts 5 to 240 minutes inside about 70 days of bars). Timed,
with ``time.perf_counter``:

* ``compute``: ``pipeline.journal.excursions.compute`` alone on every trade, bars already in memory;
* ``first_pass``: the excursions worker's first ``refresh`` (read the journal and the bars from
  SQLite, compute, write every result in one transaction);
* ``unchanged_pass``: a pass when nothing changed (a read of the journal, nothing computed);
* ``incremental_pass``: a pass after ``--new`` new trades arrived (only those are computed).

Prints one JSON line per step with ``seconds`` and ``trades_per_s``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlite_utils

from pipeline.jobs.excursions import _bars, refresh
from pipeline.journal.excursions import RiskDefaults, compute
from storage import market
from storage.db import Database

M = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % M


def make_bars(rng: np.random.Generator, symbols: list[str], minutes: int) -> dict[str, list[tuple]]:
    out = {}
    for k, symbol in enumerate(symbols):
        close = 100.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 0.001, minutes)))
        open_ = np.concatenate([[close[0]], close[:-1]])
        spread = np.abs(rng.normal(0, 0.0007, minutes)) * close
        high, low = np.maximum(open_, close) + spread, np.minimum(open_, close) - spread
        out[symbol] = [(T0 + i * M, open_[i], high[i], low[i], close[i], 1.0) for i in range(minutes)]
    return out


def make_trades(rng: np.random.Generator, n: int, bars: dict[str, list[tuple]], prefix: str) -> list[tuple]:
    symbols = list(bars)
    minutes = len(next(iter(bars.values())))
    rows = []
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        start = int(rng.integers(0, minutes - 300))
        length = int(rng.integers(5, 240))
        entry, exit_ = bars[symbol][start][4], bars[symbol][start + length][4]
        side = "BUY" if i % 2 else "SELL"
        pnl = (exit_ - entry) * (1 if side == "BUY" else -1)
        stop = entry * (0.99 if side == "BUY" else 1.01) if i % 3 else None
        rows.append(
            (
                f"{prefix}{i}",
                "trader",
                symbol,
                side,
                "round_trip",
                entry,
                exit_,
                1.0,
                T0 + start * M + 20_000,
                T0 + (start + length) * M + 40_000,
                pnl,
                0.0,
                stop,
                "[]",
                "[]",
                "{}",
                "bench",
                T0,
            )
        )
    return rows


INSERT = (
    "INSERT INTO journal_trades (trade_id, user_id, symbol, side, kind, entry_price, exit_price, quantity, entry_time, "
    "exit_time, pnl, fees, stop_loss, tags, fill_ids, context, source, stored_at) "
    f"VALUES ({','.join('?' * 18)})"
)


def line(step: str, seconds: float, trades: int) -> None:
    print(
        json.dumps(
            {
                "bench": "excursions",
                "step": step,
                "trades": trades,
                "seconds": round(seconds, 3),
                "trades_per_s": round(trades / seconds) if seconds > 0 else None,
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.excursions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--minutes", type=int, default=100_000, help="bars per symbol")
    parser.add_argument("--new", type=int, default=100, help="trades added before the incremental pass")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(7)
    symbols = [f"S{k}USDT" for k in range(args.symbols)]
    bars = make_bars(rng, symbols, args.minutes)
    trades = make_trades(rng, args.trades, bars, "rt-")
    risk = RiskDefaults()
    with tempfile.TemporaryDirectory(prefix="bench-excursions-") as tmp:
        db = Database(Path(tmp) / "desk.db")

        def fill(d: sqlite_utils.Database) -> None:
            for symbol, rows in bars.items():
                market.add_bars(d.conn, symbol, rows)
            d.conn.executemany(INSERT, trades)

        db.write(fill, timeout=600)
        frame = pd.DataFrame(
            [(*t[:13], None) for t in trades],
            columns=[
                "trade_id",
                "user_id",
                "symbol",
                "side",
                "kind",
                "entry_price",
                "exit_price",
                "quantity",
                "entry_time",
                "exit_time",
                "pnl",
                "fees",
                "stop_loss",
                "setup",
            ],
        )
        in_memory = _bars(db, frame)
        started = time.perf_counter()
        result = compute(frame, in_memory, risk)
        line("compute", time.perf_counter() - started, len(frame))
        assert (result["status"] == "ok").all()
        first = refresh(db, risk)
        line("first_pass", first.seconds, first.computed)
        same = refresh(db, risk)
        line("unchanged_pass", same.seconds, same.computed)
        new = make_trades(rng, args.new, bars, "new-")
        db.write(lambda d: d.conn.executemany(INSERT, new))
        later = refresh(db, risk)
        line("incremental_pass", later.seconds, later.computed)
        db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
