"""Candle files: Binance public-data klines and plain OHLCV CSVs, read into a checked frame.

``read_candles`` reads a file into a time-ordered frame of candles and lists the rows it refused,
each with its line, column, value and the rule it breaks. The replay source and the backtests both
read candles here, and both take the same four-tick path through a candle (``candle_prices``,
``candle_times``), so a backtest sees what a replay through the bus sees.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

CandleFormat = Literal["binance-klines", "ohlcv"]

DAY_MS = 86_400_000
DEFAULT_INTERVAL_MS = 60_000  # when a file has fewer than two candles to measure

KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
OHLCV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")

# The rules a row can break (CandleProblem.reason).
NOT_A_NUMBER = "not a number"
NOT_A_TIME = "not an ISO-8601 date-time"
NON_POSITIVE_TIME = "non-positive time"
NON_POSITIVE_PRICE = "non-positive price"
HIGH_BELOW_LOW = "high < low"
HIGH_BELOW_OPEN_CLOSE = "high below open/close"
LOW_ABOVE_OPEN_CLOSE = "low above open/close"
NEGATIVE_VOLUME = "negative volume"
DUPLICATE_TIME = "duplicate time"
OUT_OF_ORDER = "out of order"

_EXPECTED = (
    "a Binance kline CSV (12 columns " + ",".join(KLINE_COLUMNS) + ", header optional) "
    "or a CSV with the header " + ",".join(OHLCV_COLUMNS)
)
_BINANCE_NAME = re.compile(r"^([A-Za-z0-9]{2,20})-\d+(?:s|m|h|d|w|mo|M)-\d{4}-\d{2}(?:-\d{2})?\.(?:csv|zip)$")


class CandleFileError(PipelineError):
    """A file that is not a candle file at all (wrong columns, empty, too large): refused whole.

    ``detail`` quotes the file (what was found instead), shown by ``str`` for the command line;
    ``safe`` is the message without it, for pages (``pipeline.candle_files``)."""

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(f"{message}: {detail}" if detail else message)
        self.safe = message


@dataclass(frozen=True)
class CandleProblem:
    """A row refused by ``read_candles``: its line in the file (first line is 1), column, text, rule."""

    line: int
    column: str
    value: str
    reason: str


@dataclass
class CandleFile:
    """The good candles of a file (``frame``: int ``start`` in ms and float ``open, high, low, close,
    volume``, strictly increasing ``start``), their median spacing and the refused rows."""

    format: CandleFormat
    frame: pd.DataFrame
    interval_ms: int
    rejected: list[CandleProblem] = field(default_factory=list)


class _Lines:
    """The raw text of given lines of a file's bytes, found through a vectorised newline scan."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @cached_property
    def _ends(self) -> np.ndarray:
        return np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 10)

    def text(self, line: int) -> str:
        ends = self._ends
        start = 0 if line == 1 else int(ends[line - 2]) + 1
        end = int(ends[line - 1]) if line - 1 < len(ends) else len(self.data)
        return self.data[start:end].decode("utf-8", "replace").rstrip("\r")

    def field(self, line: int, index: int) -> str:
        row = next(csv.reader([self.text(line)]), [])
        return row[index].strip() if index < len(row) else ""


def _first_line(data: bytes) -> tuple[int, str]:
    """Return (blank lines before it, the first non-blank line)."""
    pos, skipped = 0, 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        text = data[pos:end].decode("utf-8", "replace").strip()
        if text:
            return skipped, text
        skipped, pos = skipped + 1, end + 1
    return skipped, ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_float(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _epoch_to_ms(values: np.ndarray) -> np.ndarray:
    """Scale epoch seconds, milliseconds, microseconds or nanoseconds to ms, by the file's magnitude."""
    finite = values[np.isfinite(values) & (values > 0)]
    magnitude = float(np.median(finite)) if len(finite) else 1e12
    scale = 1000.0 if magnitude < 1e11 else 1.0 if magnitude < 1e14 else 1e-3 if magnitude < 1e17 else 1e-6
    return values * scale


def _iso_to_ms(column: pd.Series) -> np.ndarray:
    times = pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce")
    out = np.full(len(times), np.nan)
    ok = times.notna().to_numpy()
    out[ok] = times[ok].dt.as_unit("ms").astype("int64").to_numpy()
    return out


def read_candles(path: str | Path, *, max_bytes: int | None = None) -> CandleFile:
    """Read a candle file, detecting its format from the content; raise ``CandleFileError`` when it
    is not a candle file. Rows that break a rule are left out and listed in ``rejected``."""
    path = Path(path)
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise CandleFileError(f"{path.name}: {size} bytes is more than the limit of {max_bytes}")
    return parse_candles(path.read_bytes(), path.name)


def parse_candles(data: bytes, name: str) -> CandleFile:
    """Read the bytes of a candle file called ``name`` (for messages), as ``read_candles`` does."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    skipped, first = _first_line(data)
    if not first:
        raise CandleFileError(f"{name}: the file is empty; expected {_EXPECTED}")
    cells = [c.strip().strip('"').lower() for c in first.split(",")]
    if cells[0] == "open_time":
        fmt: CandleFormat = "binance-klines"
        header, time_col, index = True, "open_time", {c: i for i, c in enumerate(KLINE_COLUMNS)}
    elif len(cells) == len(KLINE_COLUMNS) and all(_is_number(c) for c in cells[:6]):
        fmt, header, time_col = "binance-klines", False, "open_time"
        index = {c: i for i, c in enumerate(KLINE_COLUMNS)}
    elif set(OHLCV_COLUMNS) <= set(cells):
        fmt, header, time_col = "ohlcv", True, "timestamp"
        index = {c: cells.index(c) for c in OHLCV_COLUMNS}
    else:
        shown = first if len(first) <= 100 else first[:100] + "..."
        raise CandleFileError(
            f"{name}: not a candle file: expected {_EXPECTED}; found {len(cells)} columns", detail=repr(shown)
        )
    wanted = [time_col, *PRICES, "volume"]
    try:
        raw = pd.read_csv(
            io.BytesIO(data),
            header=None,
            skiprows=skipped + header,
            usecols=[index[c] for c in wanted],
            skip_blank_lines=False,
        )
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame({i: pd.Series(dtype=float) for i in sorted(index[c] for c in wanted)})
    except (pd.errors.ParserError, ValueError) as exc:
        raise CandleFileError(f"{name}: cannot parse as CSV", detail=" ".join(str(exc).split())) from None
    raw.columns = [next(c for c in wanted if index[c] == i) for i in raw.columns]
    return _check(fmt, raw, first_line=skipped + header + 1, lines=_Lines(data), index=index, time_col=time_col)


def _check(
    fmt: CandleFormat, raw: pd.DataFrame, *, first_line: int, lines: _Lines, index: dict[str, int], time_col: str
) -> CandleFile:
    n = len(raw)
    values = {c: _to_float(raw[c]) for c in (*PRICES, "volume")}
    time_rule = NOT_A_NUMBER
    if fmt == "ohlcv":
        numeric = _to_float(raw[time_col])
        present = raw[time_col].notna().to_numpy()
        if np.isfinite(numeric).sum() * 2 < present.sum():  # mostly not numbers: ISO-8601 times
            start, time_rule = _iso_to_ms(raw[time_col]), NOT_A_TIME
        else:
            start = _epoch_to_ms(numeric)
    else:
        start = _epoch_to_ms(_to_float(raw[time_col]))
    missing = {c: ~np.isfinite(v) for c, v in [(time_col, start), *values.items()]}
    blank = np.logical_and.reduce(list(missing.values()))
    for i in np.flatnonzero(blank):  # a row with nothing in it may be a blank line: skip those
        blank[i] = not lines.text(first_line + int(i)).strip()
    o, h, lo, c, v = (values[k] for k in (*PRICES, "volume"))
    with np.errstate(invalid="ignore"):
        checks: list[tuple[str, str, np.ndarray]] = [
            (col, time_rule if col == time_col else NOT_A_NUMBER, m) for col, m in missing.items()
        ]
        checks.append((time_col, NON_POSITIVE_TIME, start <= 0))
        checks += [(col, NON_POSITIVE_PRICE, values[col] <= 0) for col in PRICES]
        checks += [
            ("high", HIGH_BELOW_LOW, h < lo),
            ("high", HIGH_BELOW_OPEN_CLOSE, h < np.maximum(o, c)),
            ("low", LOW_ABOVE_OPEN_CLOSE, lo > np.minimum(o, c)),
            ("volume", NEGATIVE_VOLUME, v < 0),
        ]
    bad = np.logical_or.reduce([m for _, _, m in checks]) & ~blank
    ok = ~bad & ~blank
    # order: each good row must be later than every good row before it
    ok_idx = np.flatnonzero(ok)
    t_ok = np.rint(start[ok_idx]).astype(np.int64)
    prev = np.concatenate([[np.iinfo(np.int64).min], np.maximum.accumulate(t_ok)[:-1]]) if len(t_ok) else t_ok
    for rule, mask in ((DUPLICATE_TIME, t_ok == prev), (OUT_OF_ORDER, t_ok < prev)):
        m = np.zeros(n, bool)
        m[ok_idx[mask]] = True
        checks.append((time_col, rule, m))
    keep = ok_idx[t_ok > prev]
    problems = [
        CandleProblem(first_line + int(i), col, lines.field(first_line + int(i), index[col]), rule)
        for col, rule, mask in checks
        for i in np.flatnonzero(mask & ~blank)
    ]
    problems.sort(key=lambda p: p.line)
    frame = pd.DataFrame(
        {"start": np.rint(start[keep]).astype(np.int64), **{k: values[k][keep] for k in (*PRICES, "volume")}}
    )
    interval = int(np.median(np.diff(frame["start"].to_numpy()))) if len(frame) > 1 else DEFAULT_INTERVAL_MS
    return CandleFile(format=fmt, frame=frame, interval_ms=interval, rejected=problems)


def symbol_from_name(path: str | Path) -> str | None:
    """Return the symbol a Binance public-data file name states (``BTCUSDT-1m-2024-11-16.csv``), or None."""
    m = _BINANCE_NAME.match(Path(path).name)
    return m.group(1).upper() if m else None


def read_lines(path: Path, wanted: set[int]) -> dict[int, str]:
    """Return the text of the ``wanted`` line numbers of ``path`` (first line is 1), for error reports."""
    found: dict[int, str] = {}
    last = max(wanted, default=0)
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        for number, text in enumerate(f, start=1):
            if number in wanted:
                found[number] = text.rstrip("\r\n")
            if number >= last:
                break
    return found


def candle_prices(o: float, h: float, lo: float, c: float) -> tuple[float, float, float, float]:
    """The four prices a replay makes of a candle: open, the extreme away from the close, the other
    extreme, close (a backtest of the same candles takes the same path)."""
    return (o, lo, h, c) if c >= o else (o, h, lo, c)


def candle_times(start: int, span: int) -> tuple[int, int, int, int]:
    """The times of a candle's four ticks: its start, a quarter, half way, its last millisecond."""
    return (start, start + span // 4, start + span // 2, start + span - 1)


def candle_spans(start: np.ndarray, interval_ms: int) -> np.ndarray:
    """Each candle's span: its interval, or less when the next candle starts sooner."""
    return np.minimum(np.diff(start, append=start[-1] + interval_ms), interval_ms)
