"""A store with one stock's analysis in it (bars, news with scores, results, aggregates, an alert),
for the Analysis page's AppTest and browser test."""

from __future__ import annotations

import time

from storage import analysis, stocks
from storage.db import Database


def seed_analysis(path: str, symbol: str = "AAPL") -> int:
    """Fill the store at ``path``; return the time (Unix ms) of the alert it holds."""
    db = Database(path)
    now = int(time.time() * 1000) // 60_000 * 60_000
    bars: list[stocks.BarRow] = []
    price = 190.0
    for i in range(120):
        new = price * (1.001 if i % 3 else 0.999)
        bars.append(
            (symbol, "1Min", now - (120 - i) * 60_000, price, max(price, new), min(price, new), new, 1000.0, 10, new)
        )
        price = new
    news: list[analysis.NewsRow] = [
        (f"n-{k}", symbol, title, "", "wire", "", "", now - k * 600_000, "", "earnings", [])
        for k, title in enumerate(["Apple beats earnings expectations", "Apple faces antitrust probe"])
    ]
    alert_at = now - 30 * 60_000

    def fill(d) -> None:
        stocks.store_bars(d.conn, bars)
        analysis.store_news(d.conn, [(*n[:6], "2026-12-04T08:00:00+00:00", *n[7:]) for n in news])
        analysis.set_sentiment(
            d.conn,
            [
                ("n-0", symbol, 0.62, 0.9, "vader-3.3.2+finance-1", {}),
                ("n-1", symbol, -0.41, 0.8, "vader-3.3.2+finance-1", {}),
            ],
        )
        components = {"ma_cross": {"score": 0.4, "weight": 0.25}, "rsi": {"score": 0.0, "weight": 0.15}}
        analysis.store_result(
            d.conn,
            "r-t",
            symbol,
            "technical",
            now,
            0.35,
            0.7,
            {"components": components, "bars": 120, "last_close": price, "move_pct": 1.2},
            {},
        )
        analysis.store_result(
            d.conn,
            "r-s",
            symbol,
            "sentiment",
            now,
            0.3,
            0.6,
            {"items": [], "notes": ["LLM not used (no answer within 10 s); lexicon scores"]},
            {},
        )
        for k in range(5):
            analysis.store_aggregate(
                d.conn, symbol, now - (5 - k) * 600_000, f"r-{k}", 0.1 * k, "HOLD", price, 0.1 * k, 0.05 * k, 0.6
            )
        analysis.store_alert(
            d.conn, "a-1", symbol, "buy_signal", "high", alert_at, f"{symbol}: strong bullish alignment", {}, "r-2"
        )

    db.write(fill)
    db.close()
    return alert_at
