"""The built-in market simulator: several symbols, realistic levels, volatility clustering.

Each symbol follows a geometric random walk whose variance is a GARCH(1,1) process with
Student-t shocks, so calm and wild stretches alternate as in real markets. It is a pure random
walk in direction: no model can predict it, which makes it the leakage test for the ML stage.
The same seed and start time give the same prices.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.bus.base import Bus
from pipeline.messages import MarketData, encode
from pipeline.runner import FEED_HEADER, REPLAY, Worker
from pipeline.topics import MARKET_DATA

log = logging.getLogger(__name__)

YEAR_S = 365 * 24 * 3600
DAY_MS = 86_400_000

# symbol: (starting price, annualised volatility, 24 h quote volume in USDT)
PROFILES: dict[str, tuple[float, float, float]] = {
    "BTCUSDT": (68_000.0, 0.55, 2.0e9),
    "ETHUSDT": (3_500.0, 0.70, 1.0e9),
    "SOLUSDT": (180.0, 0.90, 5.0e8),
    "BNBUSDT": (600.0, 0.60, 2.0e8),
    "XRPUSDT": (0.60, 0.80, 3.0e8),
}

ALPHA, BETA, DOF = 0.08, 0.90, 5.0


def profile(symbol: str) -> tuple[float, float, float]:
    """Return (price, volatility, quote volume) for ``symbol``; unknown symbols get a stable one."""
    if symbol in PROFILES:
        return PROFILES[symbol]
    h = zlib.crc32(symbol.encode())
    return (round(1 + h % 1000 + (h % 97) / 100, 2), 0.8, 1.0e8)


@dataclass
class _Minute:
    start: int
    open: float
    high: float
    low: float
    volume: float


@dataclass
class _Walk:
    price: float
    vol: float
    quote_volume: float
    var_ratio: float = 1.0  # conditional variance / long-run variance
    minutes: deque[_Minute] = field(default_factory=lambda: deque(maxlen=1441))


class MarketSimulator:
    """Generates ticks for ``symbols``; not thread-safe (one source thread drives it)."""

    def __init__(self, symbols: tuple[str, ...], seed: int | None = None) -> None:
        self.symbols = symbols
        self.rng = np.random.default_rng(seed)
        self.walks = {s: _Walk(*profile(s)) for s in symbols}

    def _step(self, walk: _Walk, dt_s: float) -> tuple[float, float]:
        """Advance one step of ``dt_s`` seconds; return (log return, base volume traded)."""
        long_run = walk.vol**2 * dt_s / YEAR_S
        z = self.rng.standard_t(DOF) * math.sqrt((DOF - 2) / DOF)
        r = math.sqrt(walk.var_ratio * long_run) * z
        walk.var_ratio = (1 - ALPHA - BETA) + ALPHA * z * z * walk.var_ratio + BETA * walk.var_ratio
        walk.price *= math.exp(r)
        mean_base = walk.quote_volume / walk.price * dt_s / 86_400
        volume = mean_base * self.rng.lognormal(-0.5, 1.0) * (0.5 + 0.5 * math.sqrt(walk.var_ratio))
        return r, volume

    def _tick(self, symbol: str, ts: int, dt_s: float) -> MarketData:
        walk = self.walks[symbol]
        _, volume = self._step(walk, dt_s)
        price = walk.price
        minute = ts - ts % 60_000
        m = walk.minutes[-1] if walk.minutes else None
        if m is None or m.start != minute:
            m = _Minute(minute, price, price, price, 0.0)
            walk.minutes.append(m)
        m.high, m.low, m.volume = max(m.high, price), min(m.low, price), m.volume + volume
        day = [x for x in walk.minutes if x.start > ts - DAY_MS]
        open_24h = day[0].open
        return MarketData(
            symbol=symbol,
            timestamp=ts,
            price=price,
            open=open_24h,
            high=max(x.high for x in day),
            low=min(x.low for x in day),
            volume=sum(x.volume for x in day),
            price_change_pct=(price / open_24h - 1) * 100,
            tick_volume=volume,
        )

    def tick(self, now_ms: int, dt_s: float = 1.0) -> list[MarketData]:
        """Return one tick per symbol at ``now_ms``, ``dt_s`` seconds after the previous one."""
        return [self._tick(s, now_ms, dt_s) for s in self.symbols]

    def history(self, end_ms: int, minutes: int, step_s: int = 15) -> list[MarketData]:
        """Return ``minutes`` of past ticks every ``step_s`` seconds, ending just before ``end_ms``."""
        start = end_ms - minutes * 60_000
        out: list[MarketData] = []
        for ts in range(start - start % (step_s * 1000), end_ms, step_s * 1000):
            out.extend(self.tick(ts, step_s))
        return out


class SimulatorSource(Worker):
    """Publishes the simulator's ticks to ``crypto.market_data`` every ``tick_ms``.

    On an empty topic it first publishes ``history_minutes`` of past ticks marked as a replay
    (header ``feed: replay``), so charts have history from the first second.
    """

    kind = "source"

    def __init__(
        self,
        bus: Bus,
        simulator: MarketSimulator,
        *,
        tick_ms: int = 1000,
        history_minutes: int = 180,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__("simulator")
        self.bus = bus
        self.simulator = simulator
        self.tick_ms = tick_ms
        self.history_minutes = history_minutes
        self.clock = clock

    def _publish(self, messages: list[MarketData], headers: list[tuple[str, bytes]]) -> None:
        producer = self._producer
        # every symbol's tick of an instant in one hand-over: on the embedded bus one commit wakes the stages once
        producer.produce_many([(MARKET_DATA, encode(m), m.key(), headers) for m in messages])
        undelivered = producer.flush(30.0)
        with self.health.lock:
            self.health.produced += len(messages) - undelivered
            self.health.last_activity_at = time.time()
        if undelivered:
            self.health.error(f"{undelivered} ticks not delivered")

    def _run(self) -> None:
        self._producer = self.bus.producer("low")  # ticks go out at once: they start the path to a signal
        now_ms = int(self.clock() * 1000)
        empty = False
        for attempt in range(10):  # a topic created a moment ago may not have its leaders yet
            try:
                empty = all(t.end_offset == 0 for t in self.bus.describe_topics([MARKET_DATA]))
                break
            except Exception as exc:  # noqa: BLE001 - a young topic's errors vary by backend; all are retried
                log.warning("cannot read %s offsets yet (%s); retrying", MARKET_DATA, exc)
                self._stop.wait(0.5 * (attempt + 1))
        if empty and self.history_minutes:
            self._publish(self.simulator.history(now_ms, self.history_minutes), [(FEED_HEADER, REPLAY)])
        live = [(FEED_HEADER, b"live")]
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._publish(self.simulator.tick(int(self.clock() * 1000), self.tick_ms / 1000), live)
            next_at += self.tick_ms / 1000
            self._stop.wait(max(0.0, next_at - time.monotonic()))
