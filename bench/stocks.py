"""Seed 004's two paths and the bar API, measured.

    python -m bench.stocks [--seconds 5] [--bars 1000000] [--only fast|durable|range] [--store sqlite|postgres|both]

What is timed (one JSON line per measurement):

* ``fast_path``: from the producer's receipt of a trade (``received_ns``, stamped just before the
  source hands the trade to ``StockFeed``) to a WebSocket client's receipt of it on ``WS /ws/stocks``
  of a real API server (uvicorn, loopback); the client runs in a process of its own. The producer
  does its whole per-trade work: validation, the fan-out, ``produce`` onto the embedded bus (and a
  flush every 50 ms). Paced at 1,000 and 10,000 trades/s for ``--seconds`` each, in process and via
  a ``redis-server`` the benchmark starts on a free port (Debian's package; scripts/setup-redis.sh).
  The first half second is warm-up and not counted. Prints p50/p99/max in ms, sent, received, dropped.
* ``durable_path``: trades through ``StockFeed`` onto the embedded bus and by ``stock-trades-store``
  (``BATCH_SIZE`` 100, 500 ms maximum wait) into SQLite. ``trades_per_s`` is from the first produce
  to the last row stored; ``stored`` must equal ``published``; ``lag_*`` is how long a trade waited
  between its produce and its row being stored (from counts sampled every 20 ms), and
  ``lag_max_trades`` the most trades published but not yet stored. Paced at 20,000/s for
  ``--seconds``, then as fast as possible (200,000 trades). ``--store postgres`` (or ``both``, SQLite
  first) stores into PostgreSQL instead: a server this run starts in a temporary cluster (Debian's
  postgresql; fsync and synchronous commit on), a fresh database per run, on the same cores.
* ``bars_range``: ``GET /bars/{symbol}/range`` for one day of minute bars (390) with ``--bars``
  1-minute bars stored over 10 symbols, 500 requests on random days from a client process over
  one keep-alive connection; p50/p99 in ms. Filling the store is not timed.

Everything runs in a fresh temporary folder; the machine's load shows in the figures, so run it on
a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA")
TOKEN_ENV = "BENCH_API_TOKEN"  # the API's bearer token, handed to the client processes
SESSION = 1_796_135_400_000  # Tue 2026-12-01 09:30 New York


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- clients (own processes)


def ws_client(url: str, out: str, seconds: float) -> None:
    """Subscribe to every symbol; record (receipt - received_ns) per trade until quiet for 2 s."""
    import orjson
    from websockets.sync.client import connect

    latencies: list[tuple[int, float]] = []
    dropped = 0
    with connect(url, max_size=None, additional_headers={"Authorization": f"Bearer {os.environ[TOKEN_ENV]}"}) as ws:
        ws.recv()
        ws.send(orjson.dumps({"action": "subscribe", "symbols": list(SYMBOLS)}).decode())
        ws.recv()
        print("ready", flush=True)
        deadline = time.monotonic() + seconds + 30
        while time.monotonic() < deadline:
            try:
                frame = ws.recv(timeout=2.0 if latencies else 30.0)
            except TimeoutError:
                break
            now = time.time_ns()
            msg = orjson.loads(frame)
            if msg["type"] == "trade":
                latencies.append((msg["data"]["received_ns"], (now - msg["data"]["received_ns"]) / 1e6))
            elif msg["type"] == "dropped":
                dropped = msg["data"]["count"]
    Path(out).write_text(json.dumps({"latencies": latencies, "dropped": dropped}))


def range_client(base: str, out: str, requests: int, symbols: list[str], days: list[int]) -> None:
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    rng = random.Random(7)
    times: list[float] = []
    sizes: list[int] = []
    for i in range(requests + 20):
        day = rng.choice(days)
        path = f"/bars/{rng.choice(symbols)}/range?start={day}&end={day + 390 * 60_000}"
        started = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {os.environ[TOKEN_ENV]}"})
        resp = conn.getresponse()
        body = resp.read()
        elapsed = (time.perf_counter() - started) * 1000
        if resp.status != 200:
            raise SystemExit(f"{path}: HTTP {resp.status}: {body[:200]!r}")
        if i >= 20:  # the first requests warm the connection and the caches
            times.append(elapsed)
            sizes.append(len(json.loads(body)["bars"]))
    Path(out).write_text(json.dumps({"ms": times, "bars": sizes}))


# --------------------------------------------------------------------------- helpers


def _api(ctx: Any) -> tuple[Any, str]:
    from pipeline.api.app import create_app
    from pipeline.api.server import ApiServer
    from tests.fakes.redis_server import free_port

    port = free_port()
    server = ApiServer(create_app(ctx), "127.0.0.1", port)
    server.start()
    if not server.wait_started(20):
        raise SystemExit("the API server did not start")
    return server, f"127.0.0.1:{port}"


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.stocks", *args], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )


def _pace(rate: int, seconds: float, send: Callable[[int], None], flush: Callable[[], None]) -> int:
    """Call ``send(i)`` ``rate`` times a second for ``seconds``, in 1 ms steps; flush every 50 ms."""
    per_ms = rate / 1000
    started = time.perf_counter()
    sent = 0
    next_flush = started + 0.05
    while True:
        now = time.perf_counter()
        elapsed = now - started
        if elapsed >= seconds:
            break
        due = int(elapsed * 1000 * per_ms) + 1
        while sent < due:
            send(sent)
            sent += 1
        if now >= next_flush:
            flush()
            next_flush = now + 0.05
        time.sleep(0.0005)
    flush()
    return sent


# --------------------------------------------------------------------------- the fast path


def fast_path(kind: str, rate: int, seconds: float, folder: Path, redis_url: str | None) -> None:
    from pipeline.api.context import loopback_context
    from pipeline.bus.embedded import EmbeddedBus
    from pipeline.fanout import create_fanout
    from pipeline.sources.stocks import StockFeed
    from pipeline.topics import CATALOG
    from pipeline.worker_health import Health
    from storage.db import Database

    run = folder / f"fast-{kind}-{rate}"
    run.mkdir()
    bus = EmbeddedBus(run / "bus.db")
    bus.create_topics(CATALOG.values())
    db = Database(run / "desk.db")
    fanout = create_fanout(redis_url, f"bench:{run.name}:{time.time_ns()}")
    if redis_url:
        fanout.wait_listening()  # type: ignore[attr-defined]
    ctx = loopback_context(bus, bus.producer(), db, "bench", run, fanout=fanout, stock_symbols=SYMBOLS)
    os.environ[TOKEN_ENV] = ctx.tokens.token_for("bench")  # the client process sends it
    server, where = _api(ctx)
    out = run / "client.json"
    client = _child("--ws-client", f"ws://{where}/ws/stocks", "--out", str(out), "--seconds", str(seconds))
    assert client.stdout is not None
    client.stdout.readline()  # "ready"
    producer = bus.producer()
    feed = StockFeed("bench", producer, fanout, SYMBOLS, Health("bench", "source"))
    base = int(time.time() * 1000)

    def send(i: int) -> None:
        received = time.time_ns()
        feed.trade(
            None,
            symbol=SYMBOLS[i % len(SYMBOLS)],
            timestamp=base + i // 100,
            price=100.0 + i % 50,
            size=1 + i % 9,
            trade_id=i,
            received_ns=received,
        )

    started_ns = time.time_ns()

    def flush() -> None:
        feed.flush()

    sent = _pace(rate, seconds, send, flush)
    client.wait(120)
    result = json.loads(out.read_text())
    warm = started_ns + 500_000_000
    lat = [ms for at, ms in result["latencies"] if at >= warm]
    emit(
        {
            "bench": "fast_path",
            "fanout": kind,
            "rate_per_s": rate,
            "seconds": seconds,
            "sent": sent,
            "received": len(result["latencies"]),
            "dropped": fanout.stats().dropped + result["dropped"],
            "p50_ms": round(percentile(lat, 0.50), 3),
            "p99_ms": round(percentile(lat, 0.99), 3),
            "max_ms": round(max(lat), 3) if lat else None,
        }
    )
    server.stop()
    producer.close()
    fanout.close()
    db.close()
    bus.close()


# --------------------------------------------------------------------------- the durable path


def durable_path(
    label: str, rate: int | None, count: int, seconds: float, folder: Path, database_url: str | None = None
) -> None:
    from pipeline.bus.embedded import EmbeddedBus
    from pipeline.fanout import InProcessFanout
    from pipeline.runner import StageRunner
    from pipeline.sources.stocks import StockFeed
    from pipeline.stages.stock_store import StockTradesStore
    from pipeline.topics import CATALOG
    from pipeline.worker_health import Health
    from storage import stocks
    from storage.db import Database

    run = folder / f"durable-{label}"
    run.mkdir()
    bus = EmbeddedBus(run / "bus.db")
    bus.create_topics(CATALOG.values())
    if database_url:
        from storage.postgres import PostgresDatabase

        db: Database = PostgresDatabase(database_url)  # type: ignore[assignment]
    else:
        db = Database(run / "desk.db")
    store = StockTradesStore(db)
    runner = StageRunner(store, bus, max_batch=100, fill_wait_s=0.5)
    runner.start()
    producer = bus.producer()
    feed = StockFeed("bench", producer, InProcessFanout(), SYMBOLS, Health("bench", "source"))
    base = int(time.time() * 1000)
    published: list[tuple[float, int]] = []  # (time, trades published by then)
    stored: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            stored.append((time.perf_counter(), store.stored))
            time.sleep(0.02)

    def send(i: int) -> None:
        feed.trade(
            None, symbol=SYMBOLS[i % len(SYMBOLS)], timestamp=base + i // 100, price=100.0 + i % 50, size=1, trade_id=i
        )

    def flush() -> None:
        feed.flush()
        published.append((time.perf_counter(), feed.trades))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    published.append((started, 0))
    if rate is not None:
        sent = _pace(rate, seconds, send, flush)
    else:
        for i in range(count):
            send(i)
            if i % 1000 == 999:
                flush()
        flush()
        sent = count
    while store.stored < sent and time.perf_counter() - started < 600:
        time.sleep(0.005)
    finished = time.perf_counter()
    done.set()
    sampler.join()
    runner.stop()
    total = stocks.trade_count(db)
    lags = []
    max_behind = 0
    for t, n in stored:
        behind = next((p for _, p in reversed(published) if _ <= t), 0) - n
        max_behind = max(max_behind, behind)
        if n:  # when was the n-th trade published?
            t_pub = next(tp for tp, p in published if p >= n)
            lags.append(max(0.0, (t - t_pub) * 1000))
    emit(
        {
            "bench": "durable_path",
            "run": label,
            "store": "postgres" if database_url else "sqlite",
            "rate_per_s": rate,
            "published": sent,
            "stored": total,
            "stored_equals_published": total == sent,
            "trades_per_s": round(sent / (finished - started)),
            "lag_p50_ms": round(percentile(lags, 0.5), 1),
            "lag_p99_ms": round(percentile(lags, 0.99), 1),
            "lag_max_trades": max_behind,
            "batch_size": 100,
        }
    )
    producer.close()
    db.close()
    bus.close()


# --------------------------------------------------------------------------- the range route


def bars_range(bars: int, folder: Path) -> None:
    from pipeline.api.context import loopback_context
    from pipeline.bus.embedded import EmbeddedBus
    from pipeline.stocks.hours import market_hours
    from storage import stocks
    from storage.db import Database

    run = folder / "range"
    run.mkdir()
    db = Database(run / "desk.db")
    bus = EmbeddedBus(run / "bus.db")
    symbols = [f"SYM{i}" for i in range(10)]
    per_symbol = bars // len(symbols)
    cal = market_hours().calendar
    minutes = [int(m.value // 1_000_000) for m in cal.minutes_window(cal.first_minute, per_symbol)]
    filled = time.perf_counter()

    def fill(rows: list[stocks.BarRow]) -> None:
        db.write(lambda d: stocks.store_bars(d.conn, rows))

    for symbol in symbols:
        for lo in range(0, len(minutes), 50_000):
            fill([(symbol, "1Min", m, 10.0, 10.5, 9.5, 10.2, 100.0, 5, 10.1) for m in minutes[lo : lo + 50_000]])
    sys.stderr.write(f"filled {stocks.bar_count(db)} bars in {time.perf_counter() - filled:.0f} s\n")
    session_opens = [int(cal.session_open(s).value // 1_000_000) for s in cal.sessions_window(cal.first_session, 200)]
    session_opens = [o for o in session_opens if o <= minutes[-1] - 390 * 60_000]
    ctx = loopback_context(bus, bus.producer(), db, "bench", run)
    os.environ[TOKEN_ENV] = ctx.tokens.token_for("bench")  # the client process sends it
    server, where = _api(ctx)
    out = run / "client.json"
    client = _child("--range-client", f"http://{where}", "--out", str(out), "--opens", json.dumps(session_opens))
    client.wait(600)
    result = json.loads(out.read_text())
    emit(
        {
            "bench": "bars_range",
            "bars_stored": stocks.bar_count(db),
            "requests": len(result["ms"]),
            "bars_per_answer": statistics.median(result["bars"]),
            "p50_ms": round(percentile(result["ms"], 0.5), 2),
            "p99_ms": round(percentile(result["ms"], 0.99), 2),
        }
    )
    server.stop()
    db.close()
    bus.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stocks",
        description="Seed 004's low-latency path (producer receipt -> WebSocket client receipt, in process and via "
        "Redis, at 1,000 and 10,000 trades/s), its durable path (trades/s into SQLite, stored = published, lag) and "
        "GET /bars/{symbol}/range p50/p99 with 1,000,000 bars stored. See the module docstring for what is timed.",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each paced run (default 5)")
    parser.add_argument("--bars", type=int, default=1_000_000, help="1-minute bars stored for the range run")
    parser.add_argument("--only", choices=("fast", "durable", "range"), help="run one part only")
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres", "both"),
        default="sqlite",
        help="the durable path's store (postgres: a temporary server of this run's own)",
    )
    parser.add_argument("--ws-client", help=argparse.SUPPRESS)
    parser.add_argument("--range-client", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--opens", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ws_client:
        return ws_client(args.ws_client, args.out, args.seconds)
    if args.range_client:
        return range_client(args.range_client, args.out, 500, [f"SYM{i}" for i in range(10)], json.loads(args.opens))
    with tempfile.TemporaryDirectory(prefix="bench-stocks-") as tmp:
        folder = Path(tmp)
        if args.only in (None, "fast"):
            from tests.fakes.redis_server import RedisServer

            for rate in (1000, 10_000):
                fast_path("in-process", rate, args.seconds, folder, None)
            with RedisServer() as redis:
                for rate in (1000, 10_000):
                    fast_path("redis", rate, args.seconds, folder, redis.url)
        if args.only in (None, "durable"):
            if args.store in ("sqlite", "both"):
                durable_path("paced", 20_000, 0, args.seconds * 2, folder)
                durable_path("max", None, 200_000, 0, folder)
            if args.store in ("postgres", "both"):
                from tests.fakes.postgres_server import PostgresServer

                with PostgresServer(durable=True) as pg:
                    durable_path("paced-pg", 20_000, 0, args.seconds * 2, folder, pg.create_database("paced"))
                    durable_path("max-pg", None, 200_000, 0, folder, pg.create_database("max"))
        if args.only in (None, "range"):
            bars_range(args.bars, folder)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
