"""``POST /api/pretrade`` latency over HTTP, against a journal with a trader's history.

    python -m bench.pretrade [--requests 2000] [--history 20000] [--port 40011]

The API runs as the desk runs it (uvicorn on 127.0.0.1, ``--port``; 0 picks a free one) over a store
holding ``--history`` of the trader's journal records (entries and closes over 60 days, as the
behaviour stage keeps them), 200 behavioural alerts, the last tick of five symbols and the three
seed models' signals. One client sends ``--requests`` checks one after another (a planned BUY or
SELL of a random symbol and size, its stop 1-3 % away) after 50 untimed ones. Timed per request
with ``time.perf_counter`` from the call to the parsed answer: ``p50_ms``, ``p99_ms``, ``max_ms``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import sqlite_utils

from pipeline.api.app import create_app
from pipeline.api.context import ApiContext
from pipeline.api.server import ApiServer
from pipeline.bus.embedded import EmbeddedBus
from pipeline.journal.behaviour_settings import BehaviourRules
from storage import behaviour, market
from storage import signals as signal_store
from storage.db import Database

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
PRICES = {"BTCUSDT": 68_000.0, "ETHUSDT": 3_500.0, "SOLUSDT": 180.0, "BNBUSDT": 600.0, "XRPUSDT": 0.6}
MODELS = ("random_forest", "svm", "logistic_regression")
MIN = 60_000


def seed(db: Database, history: int, rng: np.random.Generator) -> None:
    now = int(time.time() * 1000)
    rows: list[tuple[object, ...]] = []
    for i in range(history):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        entry = now - int(rng.integers(1, 60 * 1440)) * MIN
        notional = float(rng.uniform(500, 5_000))
        if i % 2:
            pnl = float(rng.normal(0, 50))
            rows.append(
                (
                    "trader",
                    f"t{i}",
                    "trade",
                    symbol,
                    "BUY",
                    f"t{i}",
                    entry,
                    entry + 30 * MIN,
                    notional,
                    pnl,
                    pnl / notional * 100,
                )
            )
        else:
            rows.append(("trader", f"t{i}", "lot", symbol, "BUY", f"t{i}", entry, None, notional, None, None))
    alerts = [
        (f"a{i}", "trader", "overtrading", "medium", now - i * 60 * MIN, "[]", "busy day", "{}", now)
        for i in range(200)
    ]
    ticks = [(s, now - 500, p, None, None, None, None, None, None) for s, p in PRICES.items()]
    signals = [
        (s, m, now - 1000, "HOLD", "direction", p, p, 0.01, 0.55, "1", "{}") for s, p in PRICES.items() for m in MODELS
    ]

    def write(d: sqlite_utils.Database) -> None:
        behaviour.store(d.conn, rows, [])
        d.conn.executemany("INSERT INTO journal_alerts VALUES (?,?,?,?,?,?,?,?,?)", alerts)
        market.store_ticks(d.conn, ticks)
        signal_store.store(d.conn, signals)

    db.write(write, timeout=600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pretrade", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--history", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=40011)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory(prefix="bench-pretrade-") as tmp:
        db = Database(Path(tmp) / "desk.db")
        bus = EmbeddedBus(Path(tmp) / "bus.db")
        seed(db, args.history, rng)
        ctx = ApiContext(
            bus=bus,
            producer=bus.producer(),
            db=db,
            user_id="trader",
            behaviour=BehaviourRules(),
            pretrade_cooldown_min=30,
            models=MODELS,
        )
        server = ApiServer(create_app(ctx), "127.0.0.1", args.port)
        server.start()
        try:
            if not server.wait_started(20):
                raise SystemExit(f"the API did not start on 127.0.0.1:{args.port}")
            port = server.server.servers[0].sockets[0].getsockname()[1] if args.port == 0 else args.port
            url = f"http://127.0.0.1:{port}/api/pretrade"
            timings = []
            with httpx.Client(timeout=10) as client:
                for i in range(args.requests + 50):
                    symbol = SYMBOLS[i % len(SYMBOLS)]
                    price = PRICES[symbol]
                    side = "BUY" if i % 2 else "SELL"
                    away = float(rng.uniform(0.01, 0.03))
                    body = {
                        "symbol": symbol,
                        "side": side,
                        "size": round(float(rng.uniform(500, 8_000)) / price, 6),
                        "stop": price * (1 - away if side == "BUY" else 1 + away),
                    }
                    started = time.perf_counter()
                    answer = client.post(url, json=body)
                    answer.json()
                    took = (time.perf_counter() - started) * 1000
                    if answer.status_code != 200:
                        raise SystemExit(f"HTTP {answer.status_code}: {answer.text}")
                    if i >= 50:
                        timings.append(took)
            timings.sort()
            print(
                json.dumps(
                    {
                        "bench": "pretrade",
                        "requests": len(timings),
                        "history": args.history,
                        "p50_ms": round(statistics.median(timings), 2),
                        "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 2),
                        "max_ms": round(timings[-1], 2),
                    }
                ),
                flush=True,
            )
        finally:
            server.stop()
            ctx.producer.close()
            bus.close()
            db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
