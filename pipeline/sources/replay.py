"""Replay of candle files (Binance public-data klines or plain OHLCV CSV) into ``crypto.market_data``.

Files are read by ``pipeline.candles.read_candles``. ``ReplaySource`` turns every
candle into four ticks (open, low/high, high/low, close) inside the candle's interval, merged in
time order across symbols, marked ``feed: replay`` and paced by candle time, so the market store's
1-minute bars of a 1-minute file are exactly the file's candles.
"""

from __future__ import annotations

import heapq
import logging
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.bus.base import Producer
from pipeline.candles import (
    DAY_MS,
    CandleFile,
    CandleFileError,
    CandleProblem,
    candle_prices,
    candle_spans,
    candle_times,
    read_candles,
    read_lines,
    symbol_from_name,
)
from pipeline.errors import BadMessageError, ConfigError, Violation
from pipeline.messages import CRYPTO_SYMBOL, STOCK_SYMBOL
from pipeline.sources.base import MarketSource

log = logging.getLogger(__name__)

_SPEC_SYMBOL = re.compile(r"^[A-Za-z0-9]+$")


def replay_files_from_spec(spec: str, *, symbol_rule: Literal["crypto", "stock"] = "crypto") -> dict[str, Path]:
    """Parse ``BTCUSDT=data/btc.csv,ETHUSDT=data/eth.csv`` (or a bare Binance file name, whose name
    gives the symbol) into symbol -> path; raise ``ConfigError`` on a bad spec. Symbols must match
    the crypto rule, or the stock rule with ``symbol_rule="stock"``."""
    rule = STOCK_SYMBOL if symbol_rule == "stock" else CRYPTO_SYMBOL
    files: dict[str, Path] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, rest = item.partition("=")
        if sep and _SPEC_SYMBOL.match(name.strip()):
            symbol, path = name.strip().upper(), Path(rest.strip())
            if not rest.strip():
                raise ConfigError(f"replay files: {item!r} names no file; write SYMBOL=path")
        else:
            path = Path(item)
            symbol = symbol_from_name(path) or ""
            if not symbol:
                raise ConfigError(f"replay files: cannot tell the symbol of {item!r}; write SYMBOL=path")
        if not re.match(rule, symbol):
            raise ConfigError(f"replay files: symbol {symbol!r} of {item!r} does not match {rule}")
        if symbol in files:
            raise ConfigError(f"replay files: {symbol} is given twice ({files[symbol]} and {path})")
        files[symbol] = path
    if not files:
        raise ConfigError(f"replay files: {spec!r} names no file; expected SYMBOL=path[,SYMBOL=path...]")
    return files


Tick = tuple[int, int, dict[str, Any], bool]  # (timestamp, symbol order, MarketData fields, closes a candle)


class ReplaySource(MarketSource):
    """Replays candle files (symbol -> path) into ``crypto.market_data`` as ticks marked ``feed: replay``.

    ``start``/``stop`` come from any thread; the replay runs on the source's own thread. ``progress``
    and ``done`` may be read from any thread. With ``loop`` the files repeat, shifted in time so
    ticks keep increasing; otherwise the source idles (still running) once done.
    """

    replay = True
    flush_every = 500  # ticks per producer flush when nothing else flushes

    def __init__(
        self,
        producer: Producer,
        files: Mapping[str, str | Path],
        *,
        speed: float = 60.0,
        loop: bool = False,
        name: str = "replay",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if not files:
            raise ConfigError("replay: no files to replay")
        for symbol, path in files.items():
            if not re.match(CRYPTO_SYMBOL, symbol):
                raise ConfigError(f"replay: symbol {symbol!r} does not match {CRYPTO_SYMBOL}")
            if not Path(path).is_file():
                raise ConfigError(f"replay: {symbol}: no such file {str(path)!r}")
        if not (speed >= 0 and math.isfinite(speed)):
            raise ConfigError(f"replay: speed must be >= 0 (0 = as fast as possible), not {speed}")
        super().__init__(name, producer, files.keys(), clock=clock)
        self.files = {symbol: Path(path) for symbol, path in files.items()}
        self.speed = speed
        self.loop = loop
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._total = 0
        self._replayed = 0
        self._done = threading.Event()
        self._pace: tuple[int, float] | None = None  # (first tick time, clock then)

    @property
    def progress(self) -> float:
        """Return the share of candles replayed in the current pass, 0..1."""
        if self._total == 0:
            return 1.0 if self._done.is_set() else 0.0
        return min(1.0, self._replayed / self._total)

    @property
    def done(self) -> bool:
        """Return True once every candle has been replayed (never with ``loop``)."""
        return self._done.is_set()

    def _run(self) -> None:
        candles = self._load()
        self._total = sum(len(c.frame) for c in candles.values())
        if candles and self._total:
            first = min(int(c.frame["start"].iloc[0]) for c in candles.values() if len(c.frame))
            end = max(int(c.frame["start"].iloc[-1]) + c.interval_ms for c in candles.values() if len(c.frame))
            step = max(c.interval_ms for c in candles.values())
            period = -(-(end - first) // step) * step
            offset = 0
            while not self._stop.is_set():
                self._replayed = 0
                self._replay(candles, offset)
                if not self.loop:
                    break
                offset += period
        self.flush()
        if not self._stop.is_set():
            self._done.set()
            log.info("replay %s done: %d candles", self.name, self._total)
        self._stop.wait()

    def _load(self) -> dict[str, CandleFile]:
        """Read every file; dead-letter the refused rows (and refused files) with their reasons."""
        loaded: dict[str, CandleFile] = {}
        for symbol, path in self.files.items():
            try:
                candles = read_candles(path)
            except (CandleFileError, OSError) as exc:
                log.error("replay %s: %s", self.name, exc)
                self.reject(str(path), str(exc), key=symbol)
                self.health.error(str(exc))
                continue
            loaded[symbol] = candles
            by_line: dict[int, list[CandleProblem]] = defaultdict(list)
            for p in candles.rejected:
                by_line[p.line].append(p)
            texts = read_lines(path, set(by_line)) if by_line else {}
            for line, problems in by_line.items():
                refused = BadMessageError([Violation(p.column, p.value, p.reason) for p in problems])
                self.reject(f"{path.name}:{line}: {texts.get(line, '')}", refused, key=symbol)
        self.flush()
        return loaded

    def _replay(self, candles: dict[str, CandleFile], offset: int) -> None:
        streams = [self._ticks(symbol, order, c, offset) for order, (symbol, c) in enumerate(candles.items())]
        unflushed = 0
        for ts, _, fields, closes in heapq.merge(*streams):
            if self._stop.is_set():
                return
            if self.speed > 0:
                if self._pace is None:
                    self._pace = (ts, self.clock())
                wait = self._pace[1] + (ts - self._pace[0]) / 1000 / self.speed - self.clock()
                if wait > 0.001:
                    self.flush()
                    unflushed = 0
                    self._sleep(wait)
                    if self._stop.is_set():
                        return
            self.emit(fields, **fields)
            unflushed += 1
            if closes:
                self._replayed += 1
            if unflushed >= self.flush_every:
                self.flush()
                unflushed = 0
        self.flush()

    @staticmethod
    def _ticks(symbol: str, order: int, candles: CandleFile, offset: int) -> Iterator[Tick]:
        """Yield four ticks per candle with the 24 h figures of the candles replayed so far."""
        f = candles.frame
        if f.empty:
            return
        interval = candles.interval_ms
        start = f["start"].to_numpy()
        span = candle_spans(start, interval)
        window = max(DAY_MS - interval, 0)  # the earlier candles in the 24 h that end with this one
        left = np.searchsorted(start, start - window, side="left")
        index = pd.to_datetime(start, unit="ms")
        roll = {
            k: pd.Series(f[k].to_numpy(), index=index).rolling(pd.Timedelta(milliseconds=max(window, 1)), closed="left")
            for k in ("high", "low", "volume")
        }
        prev_high = roll["high"].max().fillna(-np.inf).to_numpy() if window else np.full(len(f), -np.inf)
        prev_low = roll["low"].min().fillna(np.inf).to_numpy() if window else np.full(len(f), np.inf)
        prev_vol = roll["volume"].sum().fillna(0.0).to_numpy() if window else np.zeros(len(f))
        opens = f["open"].to_numpy()
        open_24h = opens[left]
        rows = zip(
            start.tolist(),
            span.tolist(),
            opens.tolist(),
            f["high"].tolist(),
            f["low"].tolist(),
            f["close"].tolist(),
            f["volume"].tolist(),
            open_24h.tolist(),
            prev_high.tolist(),
            prev_low.tolist(),
            prev_vol.tolist(),
        )
        for st, sp, o, h, lo, c, v, o24, ph, pl, pv in rows:
            st += offset
            # quarters of the volume whose running sums are exact, so any summation gives v back
            p3 = 0.75 * v
            volumes = (v / 4, v / 4, p3 - v / 2, v - p3)
            prices = candle_prices(o, h, lo, c)
            times = candle_times(st, sp)
            high, low, cum = o, o, pv
            for k in range(4):
                price = prices[k]
                high, low, cum = max(high, price), min(low, price), cum + volumes[k]
                yield (
                    times[k],
                    order,
                    {
                        "symbol": symbol,
                        "timestamp": times[k],
                        "price": price,
                        "open": o24,
                        "high": max(ph, high),
                        "low": min(pl, low),
                        "volume": cum,
                        "price_change_pct": (price / o24 - 1) * 100,
                        "tick_volume": volumes[k],
                    },
                    k == 3,
                )
