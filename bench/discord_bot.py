"""The Discord bot's answer time with the desk running: slash command -> reply, per command.

    python -m bench.discord_bot [--rounds 40] [--tick-ms 250] [--pause-ms 50]

What runs: the default desk on the embedded bus in this process, as the app runs it (the simulator
at ``--tick-ms`` per symbol for 5 symbols, market-store, ml, signal-store, decision,
virtual-exchange, normalizer, enricher, behaviour, journal-store) plus the ``discord-bot`` stage,
against the local Discord of the tests (tests/fakes/discord_gateway.py, in this process too, on
127.0.0.1). The store holds a journal of 2,000 closed trades and 500 orders, written through the
storage doors before the run. The simulator publishes ``--history`` minutes of bars at start; a
random forest and a logistic regression are then trained on them for every symbol (untimed), so
during the run the ml stage predicts on every tick, the signal store stores, the decision stage
trades and the virtual exchange fills, as on a trader's desk.

What is timed: for each of ``--rounds`` rounds, every command in turn (``/portfolio``, ``/orders``,
``/signals BTCUSDT``, ``/journal 30d``, ``/alerts``, ``/health``, ``/chart BTCUSDT 4h``, ``/close
BTCUSDT`` and ``/cancel`` of an unknown id, both by a trader) from the moment the fake gateway
sends the ``INTERACTION_CREATE`` frame to the moment the bot's interaction callback (the reply,
the chart's PNG included) reaches the fake's HTTP server: both stamps are ``time.perf_counter()``
in this process. Commands go one at a time with ``--pause-ms`` between them, as a trader types.
Prints one JSON line per command and one for all of them: ``n``, ``p50_ms``, ``p99_ms``,
``max_ms``; and the ticks the desk stored and the signals it published meanwhile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.config import load_config
from pipeline.wiring import build_runtime
from storage import journal, market, orders
from storage.db import Database

TOKEN = "bench-token"
GUILD, CHANNEL, TRADER = 8001, 8002, 8003
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
COMMANDS: tuple[tuple[str, dict[str, str]], ...] = (
    ("portfolio", {}),
    ("orders", {}),
    ("signals", {"symbol": "BTCUSDT"}),
    ("journal", {"period": "30d"}),
    ("alerts", {}),
    ("health", {}),
    ("chart", {"symbol": "BTCUSDT", "window": "4h"}),
    ("close", {"symbol": "BTCUSDT"}),
    ("cancel", {"order_id": "no-such-order"}),
)


def seed(db: Database, now_ms: int) -> None:
    """A journal and orders, through the storage doors."""
    trades = [
        (
            f"T-{i}",
            "trader",
            SYMBOLS[i % 5],
            "BUY",
            "trade",
            100.0,
            100.0 + (i % 7) - 3,
            1.0,
            now_ms - (i + 2) * 600_000,
            now_ms - (i + 1) * 600_000,
            float((i % 7) - 3),
            0.1,
            95.0 if i % 2 else None,
            None,
            "[]",
            None,
            None,
            None,
            "[]",
            "manual",
            "{}",
            now_ms,
        )
        for i in range(2000)
    ]
    alerts = [
        (f"A-{i}", "trader", "overtrading", "medium", now_ms - i * 3_600_000, "[]", "many trades", "{}", now_ms)
        for i in range(50)
    ]
    columns = orders.ORDER_COLUMNS
    order_rows = []
    for i in range(500):
        row: dict[str, Any] = dict.fromkeys(columns)
        row.update(
            order_id=f"B-{i}",
            symbol=SYMBOLS[i % 5],
            action="BUY",
            order_type="MARKET",
            status="CLOSED",
            quantity=0.01,
            price=100.0,
            created_at=now_ms - i * 60_000,
            updated_at=now_ms - i * 60_000,
            strategy="bench",
            pnl=1.0,
        )
        order_rows.append((*(row[c] for c in columns), "{}"))

    def write(d: Any) -> None:
        journal.store(d.conn, trades=trades, void_trades=[], alerts=alerts, void_alerts=[])
        state = orders.portfolio_state(db)
        orders.store(d.conn, order_rows, equity=None, snapshot_json=json.dumps(state or {}), now_ms=now_ms)

    db.write(write)


def stored_minutes(db: Database, symbol: str) -> int:
    span = market.span(db, symbol)
    return 0 if span is None else (span[1] - span[0]) // 60_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(max(values), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.discord_bot",
        description=(
            "Times each slash command from the local Discord's INTERACTION_CREATE frame to the bot's reply "
            "reaching it, with the default desk running in the same process (simulator, market and ML stages, "
            "decision, virtual exchange, the journal's four stages). Prints p50/p99/max per command and overall."
        ),
    )
    parser.add_argument("--rounds", type=int, default=40, help="times every command is sent (default 40)")
    parser.add_argument("--tick-ms", type=int, default=250, help="simulator: one tick per symbol this often (250)")
    parser.add_argument("--pause-ms", type=int, default=50, help="pause between two commands (50)")
    parser.add_argument("--history", type=int, default=1500, help="minutes of simulated history to train on (1500)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fakes.discord_gateway import FakeDiscord  # the same local Discord as the tests

    stages = (
        "simulator,market-store,ml,signal-store,decision,virtual-exchange,normalizer,enricher,behaviour,journal-store"
    )
    with tempfile.TemporaryDirectory(prefix="bench-discord-") as data_dir, FakeDiscord(TOKEN, GUILD) as fake:
        config = load_config(
            {
                "DATA_DIR": data_dir,
                "STAGES": stages + ",discord-bot",
                "SIMULATOR_TICK_MS": str(args.tick_ms),
                "SIMULATOR_SEED": "7",
                "SIMULATOR_HISTORY_MINUTES": str(args.history),
                "DISCORD_BOT_TOKEN": TOKEN,
                "DISCORD_GUILD_ID": str(GUILD),
                "DISCORD_CHANNEL_IDS": str(CHANNEL),
                "DISCORD_TRADER_IDS": str(TRADER),
                "DISCORD_API_URL": fake.api_url,
                "DISCORD_GATEWAY_URL": fake.gateway_url,
            }
        )
        runtime = build_runtime(config)
        try:
            fake.wait_connected(timeout=60)
            seed(runtime.db, int(time.time() * 1000))
            deadline = time.monotonic() + 120
            while not all(stored_minutes(runtime.db, s) >= args.history - 5 for s in SYMBOLS):
                if time.monotonic() > deadline:
                    raise SystemExit("the market store did not store the simulated history in 120 s")
                time.sleep(0.5)
            job = runtime.train(SYMBOLS, ("random_forest", "logistic_regression"), source="store")
            while job.running:
                time.sleep(0.5)
            if job.snapshot().error:
                raise SystemExit(f"training failed: {job.snapshot().error}")
            ml = next(w for w in runtime.workers if w.name == "ml")
            produced = ml.health.snapshot().produced
            while ml.health.snapshot().produced == produced:  # the ml stage has loaded the models
                if time.monotonic() > deadline + 300:
                    raise SystemExit("the ml stage published no signal after training")
                time.sleep(0.5)
            store = next(w for w in runtime.workers if w.name == "market-store")
            ticks_before, signals_before = store.health.snapshot().processed, ml.health.snapshot().produced
            took: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
            for _ in range(args.rounds):
                for name, options in COMMANDS:
                    interaction = fake.command(name, options, user_id=TRADER, channel_id=CHANNEL)
                    answer = fake.reply_to(interaction, timeout=30)
                    took[name].append((answer.at - fake.sent_at(interaction)) * 1000)
                    time.sleep(args.pause_ms / 1000)
            ticks = store.health.snapshot().processed - ticks_before
            signals_made = ml.health.snapshot().produced - signals_before
        finally:
            runtime.stop()
    for name, values in took.items():
        print(json.dumps({"op": "command", "command": name, **summary(values)}))
    everything = [v for values in took.values() for v in values]
    print(
        json.dumps(
            {
                "op": "all",
                **summary(everything),
                "desk_ticks_processed": ticks,
                "signals_published": signals_made,
                "tick_ms": args.tick_ms,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
