"""Live own fills: from a fill on a local Binance user-data stream server to its row in the journal.

    python -m bench.live_fills [--fills 300] [--rate 20] [--backend embedded|kafka]

Starts a local server that speaks Binance's REST listen-key endpoints and its user-data WebSocket
(the test suite's fakes), the ``binance-user-stream`` source, and the four journal stages on
threads of this process (normaliser, enricher, behaviour, journal store), as the app runs them.
Then it sends ``--fills`` TRADE ``executionReport`` frames at ``--rate`` per second, alternating
buys and sells of one symbol, so each fill makes one journal row (a lot, or the round trip it
closes). Timed per fill: from the moment its frame is handed to the server's socket to the
``stored_at`` of the journal row it made (both this process's wall clock). Prints one JSON line
with p50, p95, p99 and the maximum in ms. The target is p99 <= 1000 ms.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from bench.bus import make_bus
from bench.journal import InProcess, wait_until_joined
from pipeline.journal.fills import Fill, fill_fingerprint
from pipeline.messages import Side
from pipeline.sources.exchange_api import BinanceClient
from pipeline.sources.user_stream import BinanceUserStream
from pipeline.topics import CATALOG
from storage.db import Database
from tests.fakes.exchanges import FakeBinance
from tests.fakes.market_servers import FakeBinanceUserWs, execution_report

KEY, SECRET = "bench-live-key", "bench-live-secret"


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fills", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="fills per second")
    parser.add_argument("--backend", choices=("embedded", "kafka"), default="embedded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, FakeBinance(KEY, SECRET) as rest, FakeBinanceUserWs() as ws:
        suffix = uuid.uuid4().hex[:8]
        user = f"bench-live-{suffix}"
        bus = make_bus(args.backend, folder, shared=False, run=suffix)
        bus.create_topics(CATALOG.values())
        db = Database(Path(folder) / "desk.db")
        stages = InProcess(bus, db, suffix)
        wait_until_joined(bus, stages.groups)
        source = BinanceUserStream(
            bus.producer(),
            BinanceClient(KEY, SECRET, base_url=rest.base_url),
            api_key=KEY,
            user_id=user,
            symbols=["BTCUSDT"],
            rest_url=rest.base_url,
            ws_url=ws.url,
        )
        source.start()
        conn = ws.wait_live()
        sent: dict[str, float] = {}
        start = time.time()
        for i in range(args.fills):
            delay = start + i / args.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            side: Side = "BUY" if i % 2 == 0 else "SELL"
            frame = execution_report(10_000 + i, side=side, price=f"{68000 + i}.00", ts=int(time.time() * 1000))
            fill = Fill("BTCUSDT", side, float(frame["L"]), float(frame["l"]), frame["T"], exchange_id=str(frame["t"]))
            sent[fill_fingerprint(user, fill, 0, venue="binance")] = time.time()
            conn.outbox.put(json.dumps(frame, separators=(",", ":")))
        deadline = time.time() + 120
        while time.time() < deadline:
            if db.query("SELECT count(*) AS n FROM journal_trades WHERE user_id=?", (user,))[0]["n"] >= args.fills:
                break
            time.sleep(0.25)
        rows = db.query("SELECT fill_ids, stored_at FROM journal_trades WHERE user_id=?", (user,))
        latencies = sorted(r["stored_at"] - sent[orjson.loads(r["fill_ids"])[-1]] * 1000 for r in rows)
        source.stop()
        stages.stop()
        db.close()
        bus.close()
    if len(latencies) < args.fills:
        raise SystemExit(f"only {len(latencies)} of {args.fills} fills reached the journal")
    print(
        json.dumps(
            {
                "backend": args.backend,
                "fills": args.fills,
                "rate_per_s": args.rate,
                "latency_ms_p50": round(_pct(latencies, 50), 1),
                "latency_ms_p95": round(_pct(latencies, 95), 1),
                "latency_ms_p99": round(_pct(latencies, 99), 1),
                "latency_ms_max": round(latencies[-1], 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
