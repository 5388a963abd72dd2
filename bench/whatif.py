"""What-if replays: the trader's closed trades run again on their bars under five exit rules.

    python -m bench.whatif [--trades 10000] [--symbols 5]

``--trades`` closed trades (longs and shorts, two in three with a stop, 5 to 240 minutes long) over
``--symbols`` symbols of synthetic 1-minute bars. Timed with ``time.perf_counter``:

* ``replay``: ``pipeline.journal.whatif.replay`` of every trade under the five rules exit at 1R,
  exit at 2R, honour the planned stop, a 1 % trailing stop and hold 15 bars, the bars in memory;
* ``load_and_replay``: the same after reading the trades' bars from SQLite, as the What-if page does.

Prints one JSON line per step with ``seconds``, the trade-rule pairs replayed and skipped.
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

from bench.excursions import INSERT, make_bars, make_trades
from pipeline.journal.excursions import Bars
from pipeline.journal.whatif import Rule, replay
from storage import journal, market
from storage.db import Database

RULES = (
    Rule("target_r", 1.0),
    Rule("target_r", 2.0),
    Rule("planned_stop"),
    Rule("trailing_pct", 1.0),
    Rule("hold_bars", 15),
)


def line(step: str, seconds: float, results: pd.DataFrame) -> None:
    skipped = int((results["status"] == "skipped").sum())
    print(
        json.dumps(
            {
                "bench": "whatif",
                "step": step,
                "rules": len(RULES),
                "replayed": len(results) - skipped,
                "skipped": skipped,
                "seconds": round(seconds, 3),
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.whatif", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=10_000)
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--minutes", type=int, default=50_000, help="bars per symbol")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(11)
    bars = make_bars(rng, [f"S{k}USDT" for k in range(args.symbols)], args.minutes)
    rows = make_trades(rng, args.trades, bars, "t-")
    with tempfile.TemporaryDirectory(prefix="bench-whatif-") as tmp:
        db = Database(Path(tmp) / "desk.db")

        def fill(d: sqlite_utils.Database) -> None:
            for symbol, series in bars.items():
                market.add_bars(d.conn, symbol, series)
            d.conn.executemany(INSERT, rows)

        db.write(fill, timeout=600)
        trades = journal.closed_trades(db, "trader")
        frames = {
            s: pd.DataFrame(b, columns=["start", "open", "high", "low", "close", "volume"]) for s, b in bars.items()
        }
        in_memory = {s: Bars.of(f) for s, f in frames.items()}
        started = time.perf_counter()
        result = replay(trades, RULES, in_memory)
        line("replay", time.perf_counter() - started, result.results)
        started = time.perf_counter()
        loaded = {}
        for symbol, part in trades.groupby("symbol"):
            since = int(part["entry_time"].min()) - 60_000
            until = int(part["exit_time"].max()) + 16 * 60_000
            loaded[str(symbol)] = Bars.of(market.ohlc_between(db, str(symbol), since, until))
        again = replay(trades, RULES, loaded)
        line("load_and_replay", time.perf_counter() - started, again.results)
        db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
