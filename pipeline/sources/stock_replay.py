"""Replay of stock bar files into ``stock_prices_raw``, marked ``feed: replay``.

``read_stock_file`` reads three layouts, told apart by the header:

* Yahoo-style daily ``Date,Open,High,Low,Close,Adj Close,Volume`` (``Adj Close`` optional; an
  extra ``OpenInterest`` column is ignored): one ``1Day`` bar per row, starting at midnight New York;
* minute files: a ``Datetime`` column, or ``Date`` and ``Time`` columns (also when the header
  names ``Date`` only and the rows carry a time second, as backtrader's samples do); times without
  an offset are New York time (the exchange's);
* the plain OHLCV files the crypto replay reads (``timestamp,open,high,low,close,volume``, epoch or
  ISO times), through ``pipeline.candles.read_candles``.

The bar size is measured (median spacing): 1-minute and daily files replay; another spacing (a
5-minute file) is refused whole with a line that says so. Every refused row is named by its line,
column, value and rule, and dead-lettered with them; the other rows replay.

``StockReplaySource`` publishes the bars of all files in time order, paced by bar time (``speed``
times real time; 0 = as fast as possible), on its own thread.
"""

from __future__ import annotations

import csv
import heapq
import io
import math
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.bus.base import Producer
from pipeline.candles import CandleFileError, read_candles
from pipeline.errors import BadMessageError, ConfigError, Violation
from pipeline.fanout import TradeFanout
from pipeline.messages import STOCK_SYMBOL
from pipeline.runner import Worker
from pipeline.sources.stocks import StockFeed
from pipeline.topics import STOCK_PRICES_RAW

EXCHANGE_TZ = ZoneInfo("America/New_York")
MAX_BYTES = 200 * 1024 * 1024
_TIME = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")


@dataclass(frozen=True)
class RowProblem:
    """A refused row: its line (the first line is 1), column, text and the rule it breaks."""

    line: int
    column: str
    value: str
    reason: str


@dataclass
class StockFile:
    """The good bars of a file as (start ms, open, high, low, close, volume), its timeframe, the refused rows."""

    layout: str
    timeframe: str
    bars: list[tuple[int, float, float, float, float, float]]
    lines: list[int]
    rejected: list[RowProblem] = field(default_factory=list)


def _time(text: str, date_only: bool) -> int:
    when = datetime.fromisoformat(text.strip().replace(" ", "T", 1) if not date_only else text.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=EXCHANGE_TZ)
    return int(when.timestamp() * 1000)


def read_stock_file(path: str | Path, *, max_bytes: int = MAX_BYTES) -> StockFile:
    """Read a stock bar file; raise ``CandleFileError`` when it is none of the layouts or of a bar
    size that does not replay. Rows that break a rule are left out and listed in ``rejected``."""
    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise CandleFileError(f"{path.name}: {path.stat().st_size} bytes is more than the limit of {max_bytes}")
    text = path.read_bytes().decode("utf-8-sig", "replace")
    rows = list(csv.reader(io.StringIO(text)))
    first = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if first is None:
        raise CandleFileError(f"{path.name}: the file is empty")
    header = [c.strip().lower() for c in rows[first]]
    if "timestamp" in header:
        return _plain(path)
    names = {"open", "high", "low", "close", "volume"}
    if not names <= set(header) or not ({"date", "datetime"} & set(header)):
        raise CandleFileError(
            f"{path.name}: not a stock bar file: expected Date,Open,High,Low,Close[,Adj Close],Volume, "
            f"Datetime,Open,... or Date,Time,Open,..., or timestamp,open,high,low,close,volume; found {rows[first][:8]}"
        )
    data = [(i + 1, r) for i, r in enumerate(rows) if i > first and any(c.strip() for c in r)]
    shift = 0
    if "datetime" in header:
        layout, when_cols = "minute", [header.index("datetime")]
    elif "time" in header:
        layout, when_cols = "minute", [header.index("date"), header.index("time")]
    elif data and len(data[0][1]) == len(header) + 1 and _TIME.match(data[0][1][header.index("date") + 1].strip()):
        d = header.index("date")
        layout, when_cols, shift = "minute", [d, d + 1], 1  # the rows carry a time the header does not name
    else:
        layout, when_cols = "daily", [header.index("date")]
    index = {n: header.index(n) + (shift if header.index(n) > when_cols[0] else 0) for n in names}
    out = StockFile(layout, "1Day" if layout == "daily" else "1Min", [], [])
    last: int | None = None
    for line, row in data:
        cells = [c.strip() for c in row]
        when_text = " ".join(cells[c] for c in when_cols if c < len(cells))
        try:
            start = _time(when_text, layout == "daily")
        except ValueError:
            out.rejected.append(
                RowProblem(line, "Datetime" if layout == "minute" else "Date", when_text, "a date-time")
            )
            continue
        values: dict[str, float] = {}
        problems: list[RowProblem] = []
        for name in ("open", "high", "low", "close", "volume"):
            raw = cells[index[name]] if index[name] < len(cells) else ""
            try:
                values[name] = float(raw)
            except ValueError:
                problems.append(RowProblem(line, name.title(), raw, "a number"))
                continue
            if not math.isfinite(values[name]):
                problems.append(RowProblem(line, name.title(), raw, "a finite number"))
            elif name != "volume" and values[name] <= 0:
                problems.append(RowProblem(line, name.title(), raw, "a positive price"))
            elif name == "volume" and values[name] < 0:
                problems.append(RowProblem(line, "Volume", raw, "volume >= 0"))
        if not problems:
            o, h, lo, c = values["open"], values["high"], values["low"], values["close"]
            if h < lo:
                problems.append(RowProblem(line, "High", cells[index["high"]], f"high >= low ({lo:g})"))
            elif h < max(o, c) or lo > min(o, c):
                problems.append(RowProblem(line, "High", cells[index["high"]], "high >= open, close >= low"))
            elif last is not None and start <= last:
                what = "duplicate time" if start == last else "out of order"
                column = "Datetime" if layout == "minute" else "Date"
                problems.append(RowProblem(line, column, when_text, f"newer than the row before ({what})"))
        if problems:
            out.rejected.extend(problems)
            continue
        last = start
        out.bars.append((start, values["open"], values["high"], values["low"], values["close"], values["volume"]))
        out.lines.append(line)
    _check_spacing(path, out)
    return out


def _plain(path: Path) -> StockFile:
    candles = read_candles(path)
    frame = candles.frame
    bars = list(
        zip(
            frame["start"].astype("int64").tolist(),
            frame["open"].tolist(),
            frame["high"].tolist(),
            frame["low"].tolist(),
            frame["close"].tolist(),
            frame["volume"].tolist(),
        )
    )
    rejected = [RowProblem(p.line, p.column, p.value, p.reason) for p in candles.rejected]
    out = StockFile("ohlcv", "1Min", bars, [0] * len(bars), rejected)
    _check_spacing(path, out)
    return out


def _check_spacing(path: Path, out: StockFile) -> None:
    if len(out.bars) < 2:
        return
    gaps = [b[0] - a[0] for a, b in zip(out.bars, out.bars[1:])]
    median = statistics.median(gaps)
    if out.layout != "daily" and 20 * 3_600_000 <= median <= 26 * 3_600_000:
        out.timeframe = "1Day"
    elif out.layout == "daily" and median > 4 * 86_400_000:  # a long weekend, not a weekly file
        raise CandleFileError(
            f"{path.name}: bars every {median / 86_400_000:g} days; the stock replay takes 1-minute or daily files"
        )
    elif out.layout != "daily" and median != 60_000:
        raise CandleFileError(
            f"{path.name}: bars every {median / 60_000:g} minutes; the stock replay takes 1-minute or daily files"
        )


class StockReplaySource(Worker):
    """Replays stock bar files (symbol -> path) into ``stock_prices_raw`` as ``feed: replay``."""

    kind = "source"
    flush_every = 500

    def __init__(
        self,
        producer: Producer,
        fanout: TradeFanout,
        files: Mapping[str, str | Path],
        *,
        speed: float = 60.0,
        name: str = "stock-replay",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name)
        for symbol, path in files.items():
            if not re.match(STOCK_SYMBOL, symbol):
                raise ConfigError(f"stock replay: symbol {symbol!r} does not match {STOCK_SYMBOL}")
            if not Path(path).is_file():
                raise ConfigError(f"stock replay: {symbol}: no such file {str(path)!r}")
        if not (speed >= 0 and math.isfinite(speed)):
            raise ConfigError(f"stock replay: speed must be >= 0 (0 = as fast as possible), not {speed}")
        self.files = {s: Path(p) for s, p in files.items()}
        self.speed = speed
        self.clock = clock
        self.feed = StockFeed(name, producer, fanout, self.files, self.health, replay=True, clock=clock)
        self.done = False

    def status(self) -> dict[str, object]:
        return {**self.feed.status(), "done": self.done}

    def _run(self) -> None:
        streams = []
        for symbol, path in self.files.items():
            try:
                stock_file = read_stock_file(path)
            except (CandleFileError, OSError) as exc:
                self.feed.reject(str(path), str(exc), topic=STOCK_PRICES_RAW, key=symbol)
                self.health.error(str(exc))
                continue
            for p in stock_file.rejected:
                self.feed.reject(
                    f"{path.name}:{p.line}",
                    BadMessageError([Violation(p.column, p.value, p.reason)]),
                    topic=STOCK_PRICES_RAW,
                    key=symbol,
                )
            streams.append(_bars(symbol, stock_file))
        self.feed.flush()
        paced: tuple[int, float] | None = None
        unflushed = 0
        for start, symbol, timeframe, (o, h, lo, c, v) in heapq.merge(*streams):
            if self._stop.is_set():
                break
            if self.speed > 0:
                paced = paced or (start, self.clock())
                wait = paced[1] + (start - paced[0]) / 1000 / self.speed - self.clock()
                if wait > 0.001:
                    self.feed.flush()
                    unflushed = 0
                    if self._stop.wait(wait):
                        break
            self.feed.bar(
                None, symbol=symbol, start_ms=start, open=o, high=h, low=lo, close=c, volume=v, timeframe=timeframe
            )
            unflushed += 1
            if unflushed >= self.flush_every:
                self.feed.flush()
                unflushed = 0
        self.feed.flush()
        self.done = True
        self._stop.wait()


def _bars(symbol: str, f: StockFile) -> Iterator[tuple[int, str, str, tuple[float, float, float, float, float]]]:
    for start, o, h, lo, c, v in f.bars:
        yield start, symbol, f.timeframe, (o, h, lo, c, v)
