"""Soak: the whole desk under steady load for N minutes, watched every minute.

    python -m bench.soak --minutes N [--rate 1000] [--symbols 50] [--threads] [--data-dir DIR]

What runs: the market simulator with ``--symbols`` symbols ticking every second, market-store, ml
(a logistic regression per symbol, trained before the clock starts on simulator history),
signal-store, decision, virtual-exchange, and the journal's four stages, on the embedded bus in a
fresh folder. By default the ml stage and the journal's stages run as processes of their own
(``STAGE_PROCESSES``), so the figures are per process; ``--threads`` keeps everything in one.
A producer thread offers ``--rate`` whole trades per second (entry-form trades of 20 users, each
with its exit, so each makes one journal row) through the same path the trades API uses.

What is timed and printed: nothing is timed per message. Every minute one JSON line gives the
resident memory (RSS, MB) of every process and the anonymous part of it (``rss_anon_mb``, Linux's
``RssAnon``: the process's own heap and stacks), each stage's lag (messages not yet consumed), the
dead letters so far, the trades offered and the journal rows stored. Training and start-up come
before minute 0 and are not in any figure. The last line sums up: RSS and anonymous growth of each
process from the end of the first minute to the end (%), the lag at each minute, dead letters, and
whether every trade offered reached the journal (given up to two minutes after the load stops).

Why both: RSS also counts the pages of the SQLite files a process has read through its memory map
(``storage.db.connect`` maps up to 256 MB of each file per connection). Those are the kernel's
shared file cache, dropped and re-read at will, not memory the process holds: they come and go by
whatever a process read last, so RSS read once a minute swings by up to the map's size. A leak
shows in the anonymous figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

STAGES = "simulator,market-store,ml,signal-store,decision,virtual-exchange,normalizer,enricher,behaviour,journal-store"
PROCESS_STAGES = "ml,normalizer,enricher,behaviour,journal-store"
USERS = 20


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """Resident memory of a process in MB (Linux ``/proc``), or None when it is gone. ``field``:
    ``VmRSS`` (all of it) or ``RssAnon`` (its private memory, without mapped files)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def symbols(n: int) -> list[str]:
    """``n`` distinct symbols of the form the settings accept (three to six letters and USDT)."""
    out = []
    for i in range(n):
        a, b, c = chr(65 + i // 676 % 26), chr(65 + i // 26 % 26), chr(65 + i % 26)
        out.append(f"S{a}{b}{c}USDT")
    return out


class Trades(threading.Thread):
    """Offers ``rate`` whole trades a second, in batches of a tenth of a second, flushed each time."""

    def __init__(self, producer: Any, rate: int, syms: list[str]) -> None:
        super().__init__(name="soak-trades", daemon=True)
        self.producer, self.rate, self.syms = producer, rate, syms
        self.stop = threading.Event()
        self.offered = 0
        self.offered_at: list[tuple[float, int]] = []

    def run(self) -> None:
        from pipeline.messages import RawTrade, encode
        from pipeline.topics import RAW_TRADES

        step = max(self.rate // 10, 1)
        next_at = time.monotonic()
        while not self.stop.is_set():
            now = int(time.time() * 1000)
            for _ in range(step):
                i = self.offered
                user = f"soak-{i % USERS}"
                price = 100.0 + (i % 997) * 0.1
                payload = {
                    "symbol": self.syms[i % len(self.syms)],
                    "side": "BUY" if i % 2 else "SELL",
                    "entry_price": price,
                    "exit_price": price * (1.01 if i % 3 else 0.99),
                    "quantity": 1.0,
                    "entry_time": now - 120_000,
                    "exit_time": now - 60_000,
                }
                raw = RawTrade(
                    raw_id=f"soak-{i}", user_id=user, source="api", format="manual", received_at=now, payload=payload
                )
                self.producer.produce(RAW_TRADES, encode(raw), key=user.encode())
                self.offered += 1
            self.producer.flush(30.0)
            self.offered_at.append((time.monotonic(), self.offered))
            next_at += 0.1
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10, help="minutes of load after start-up (default 10)")
    parser.add_argument("--rate", type=int, default=1000, help="trades offered per second (default 1000)")
    parser.add_argument("--symbols", type=int, default=50, help="symbols of market data (default 50)")
    parser.add_argument("--threads", action="store_true", help="every stage on a thread of this process")
    parser.add_argument("--data-dir", default=None, help="folder for the run (default: a fresh temporary one)")
    args = parser.parse_args(argv)

    folder = Path(args.data_dir or tempfile.mkdtemp(prefix="soak-"))
    syms = symbols(args.symbols)
    os.environ.update(
        {
            "DATA_DIR": str(folder),
            "KAFKA_BOOTSTRAP_SERVERS": "",
            "SYMBOLS": ",".join(syms),
            "STAGES": STAGES,
            "STAGE_PROCESSES": "" if args.threads else PROCESS_STAGES,
            "ML_MODELS": "logistic_regression",
            "DECISION_MODEL": "logistic_regression",
            "SIMULATOR_HISTORY_MINUTES": "30",
            "SIMULATOR_SEED": "7",
            "DISCORD_WEBHOOK_URL": "",
            "NOTIFY_WEBHOOK_URL": "",
            "USER_ID": "soak-0",
        }
    )
    from pipeline.config import load_config
    from pipeline.wiring import build_runtime

    config = load_config(os.environ)
    # Models first (the ml process loads what the registry holds), from the simulator's own history.
    trainer = build_runtime(config, (), start=False)
    job = trainer.train(tuple(syms), ("logistic_regression",), source="simulator", bars=2000)
    while job.running:
        time.sleep(0.5)
    trained = len(job.snapshot().trained)
    trainer.stop()
    runtime = build_runtime(config)
    trades = Trades(runtime.producer, args.rate, syms)
    minutes: list[dict[str, Any]] = []
    try:
        time.sleep(5.0)  # let the children start and the simulator publish its history
        trades.start()
        for minute in range(1, args.minutes + 1):
            time.sleep(60.0)
            minutes.append(snapshot(runtime, trades, minute, folder))
            print(json.dumps(minutes[-1]), flush=True)
    finally:
        trades.stop.set()
        trades.join(10)
    offered = trades.offered  # every trade offered reaches the journal, given up to 2 minutes to drain
    deadline = time.monotonic() + 120
    while stored_rows(folder) < offered and time.monotonic() < deadline:
        time.sleep(1.0)
    summary = summarise(minutes, trained, len(syms), args.rate, offered, stored_rows(folder))
    runtime.stop()
    print(json.dumps(summary), flush=True)
    return 0


def stored_rows(folder: Path) -> int:
    import sqlite3

    with sqlite3.connect(folder / "desk.db", timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM journal_trades WHERE source='api'").fetchone()[0])


def snapshot(runtime: Any, trades: Trades, minute: int, folder: Path) -> dict[str, Any]:
    """One minute's figures: RSS per process, lag per stage, dead letters, trades offered and stored."""
    pids = {"desk": os.getpid()}
    for w in runtime.workers:
        pid = w.status().get("child_pid")
        if pid:
            pids[w.name] = int(pid)
    names = {w.name for w in runtime.workers}
    lag = {g.group_id: g.lag for g in runtime.groups() if g.group_id in names}
    return {
        "minute": minute,
        "rss_mb": {name: rss_mb(pid) for name, pid in pids.items()},
        "rss_anon_mb": {name: rss_mb(pid, "RssAnon") for name, pid in pids.items()},
        "lag": lag,
        # every dead letter, written by a thread or a process: the messages on the dead-letter topics
        "dead_letters": sum(t.messages for t in runtime.topics() if t.name.endswith("_dlq")),
        "trades_offered": trades.offered,
        "journal_rows": stored_rows(folder),
    }


def summarise(
    minutes: list[dict[str, Any]], trained: int, symbols: int, rate: int, offered: int, stored: int
) -> dict[str, Any]:
    first, last = minutes[0], minutes[-1]

    def growth(field: str) -> dict[str, float]:
        return {
            name: round((last[field].get(name, 0) - mb) / mb * 100, 1)
            for name, mb in first[field].items()
            if mb and last[field].get(name)
        }

    return {
        "summary": True,
        "minutes": len(minutes),
        "rate_per_s": rate,
        "symbols": symbols,
        "models_trained": trained,
        "rss_growth_pct_after_minute_1": growth("rss_mb") if len(minutes) > 1 else None,
        "rss_anon_growth_pct_after_minute_1": growth("rss_anon_mb") if len(minutes) > 1 else None,
        "rss_mb_last": last["rss_mb"],
        "rss_anon_mb_last": last["rss_anon_mb"],
        "lag_by_minute": {k: [m["lag"].get(k) for m in minutes] for k in last["lag"]},
        "dead_letters": last["dead_letters"],
        "trades_offered": offered,
        "journal_rows_stored": stored,
        "all_stored": stored >= offered,
        "run": uuid.uuid4().hex[:8],
    }


if __name__ == "__main__":
    sys.exit(main())
