"""Seed 003's stock analysis, measured.

    python -m bench.analysis [--symbols 100] [--items 5000]

What is timed (one JSON line per measurement):

* ``lexicon``: ``LexiconScorer.score`` (VADER with the finance words) over ``--items`` news items
  (a headline and a two-sentence lead each), one thread; ``items_per_s``.
* ``bar_to_alert``: the four analysis stages (analysis-triggers with the default 250 ms debounce,
  technical-analysis, sentiment-analysis, aggregation) as threads on the embedded bus. Each of
  ``--symbols`` symbols has 60 flat minute bars stored; then, one symbol every 20 ms, a bar that
  falls 5 % is produced on ``stock_prices_raw``; timed from its produce to its risk alert reaching
  a consumer of ``alerts``. p50/p99/max ms.
* ``news_to_alert``: the same with ``--symbols`` other symbols, each with two negative news items
  stored; a third is produced on ``stock_news_raw``; timed from its produce to the risk alert
  (a cluster of three) reaching the consumer.
* ``trigger_to_result``: from each price trigger's ``timestamp`` (set just before it is produced)
  to its technical result reaching a consumer of ``analysis_results`` (the bar run).
* ``burst``: 1,000 bars of one symbol produced at once; how many triggers (jobs) they made.

Everything runs in a fresh temporary folder; the machine's load shows in the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def lexicon(items: int) -> None:
    from pipeline.analysis.sentiment import LexiconScorer

    scorer = LexiconScorer()
    heads = [
        "Apple beats earnings expectations, shares surge",
        "Tesla plunges after recall and SEC investigation",
        "Microsoft announces quarterly dividend",
        "Nvidia downgraded to underperform as demand slows",
    ]
    lead = "The company reported results on Tuesday. Analysts said the outlook remained uncertain for the year."
    began = time.perf_counter()
    for i in range(items):
        scorer.score(f"{heads[i % 4]} ({i})", lead)
    seconds = time.perf_counter() - began
    emit({"op": "lexicon", "items": items, "seconds": round(seconds, 3), "items_per_s": round(items / seconds)})


class Watch:
    """A consumer thread that stamps when each alert and result arrives."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.alerts: dict[str, float] = {}
        self.results: list[float] = []
        self.triggers = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        consumer = self.bus.consumer(
            "bench-watch", ["alerts", "analysis_results", "analysis_triggers"], auto_offset_reset="earliest"
        )
        while not self.stop.is_set():
            for r in consumer.poll(1000, 0.05):
                now = time.time()
                body = orjson.loads(r.value or b"{}")
                if r.topic == "alerts":
                    self.alerts.setdefault(body["symbol"], now)
                elif r.topic == "analysis_results":
                    trigger_at = body["metadata"].get("trigger_at")
                    if trigger_at:
                        self.results.append((now - trigger_at) * 1000)
                elif body["symbol"] == "BURST":
                    self.triggers += 1
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.analysis", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--items", type=int, default=5000)
    args = parser.parse_args()
    lexicon(args.items)

    from pipeline.config import load_config
    from pipeline.messages import StockNews, StockPrice, build, encode, ms_iso
    from pipeline.stages import technical_analysis
    from pipeline.wiring import build_runtime
    from storage import analysis, stocks

    folder = Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    rt = build_runtime(
        load_config(
            {"DATA_DIR": str(folder), "STAGES": "analysis-triggers,technical-analysis,sentiment-analysis,aggregation"}
        )
    )
    # Results carry when their trigger was made, so the watch can time trigger -> result.
    real = technical_analysis.TechnicalAnalysis._analyse

    def stamped(self: Any, trigger: Any, *a: Any) -> Any:
        found = real(self, trigger, *a)
        if found is not None:
            found.metadata["trigger_at"] = datetime.fromisoformat(trigger.timestamp).timestamp()
        return found

    technical_analysis.TechnicalAnalysis._analyse = stamped  # type: ignore[method-assign,assignment]
    watch = Watch(rt.bus)
    watch.thread.start()
    now = int(time.time() * 1000) // 60_000 * 60_000
    bar_syms = [f"B{i:03d}" for i in range(args.symbols)]
    news_syms = [f"N{i:03d}" for i in range(args.symbols)]
    rows = [
        (
            s,
            "1Min",
            now - (61 - i) * 60_000,
            100.0,
            100.05,
            99.95,
            100.0 + (0.01 if i % 2 else -0.01),
            1000.0,
            None,
            None,
        )
        for s in bar_syms
        for i in range(60)
    ]
    news_rows: list[Any] = [
        (
            f"n-{s}-{k}",
            s,
            "Shares plunge after fraud probe and lawsuit",
            "",
            "w",
            "",
            ms_iso(now),
            now - k * 60_000,
            ms_iso(now),
            "general",
            [],
        )
        for s in news_syms
        for k in range(2)
    ]

    def fill(d: Any) -> None:
        stocks.store_bars(d.conn, rows)
        analysis.store_news(d.conn, news_rows)

    rt.db.write(fill)
    producer = rt.bus.producer()
    sent: dict[str, float] = {}
    for s in bar_syms:
        m = build(
            StockPrice,
            symbol=s,
            time=ms_iso(now - 60_000),
            open=100.0,
            high=100.0,
            low=94.9,
            close=95.0,
            volume=5000.0,
            collected_at=ms_iso(now),
        )
        sent[s] = time.time()
        producer.produce("stock_prices_raw", encode(m), key=s.encode())
        producer.flush()
        time.sleep(0.02)
    for s in news_syms:
        m = build(
            StockNews,
            news_id=f"n-{s}-2",
            symbol=s,
            title="Company misses and shares tumble on layoffs",
            content="",
            source="w",
            source_url="",
            published_at=ms_iso(now),
            collected_at=ms_iso(now),
            category="general",
            tags=[],
        )
        sent[s] = time.time()
        producer.produce("stock_news_raw", encode(m), key=s.encode())
        producer.flush()
        time.sleep(0.02)
    deadline = time.time() + 60
    while len([s for s in sent if s in watch.alerts]) < len(sent) and time.time() < deadline:
        time.sleep(0.1)
    for name, syms in (("bar_to_alert", bar_syms), ("news_to_alert", news_syms)):
        lat = [(watch.alerts[s] - sent[s]) * 1000 for s in syms if s in watch.alerts]
        emit(
            {
                "op": name,
                "symbols": len(syms),
                "alerts": len(lat),
                "p50_ms": round(pct(lat, 0.5), 1),
                "p99_ms": round(pct(lat, 0.99), 1),
                "max_ms": round(max(lat), 1) if lat else None,
            }
        )
    res = watch.results
    emit(
        {
            "op": "trigger_to_result",
            "results": len(res),
            "p50_ms": round(pct(res, 0.5), 1),
            "p99_ms": round(pct(res, 0.99), 1),
            "mean_ms": round(statistics.fmean(res), 1) if res else None,
        }
    )
    price = 100.0
    for i in range(1000):
        new = price * (1.0002 if i % 3 else 0.9999)
        m = build(
            StockPrice,
            symbol="BURST",
            time=ms_iso(now - (1000 - i) * 60_000),
            open=price,
            high=max(price, new),
            low=min(price, new),
            close=new,
            volume=100.0,
            collected_at=ms_iso(now),
        )
        producer.produce("stock_prices_raw", encode(m), key=b"BURST")
        price = new
    producer.flush()
    time.sleep(3.0)
    emit({"op": "burst", "bars": 1000, "triggers": watch.triggers})
    watch.stop.set()
    watch.thread.join(5)
    rt.stop()


if __name__ == "__main__":
    main()
