"""Candle files, read into a checked, time-ordered frame: Binance klines, plain OHLCV CSVs, dated
(Yahoo, backtrader) CSVs, and freqtrade's JSON and feather files (layouts: ``files``).

``read_candles`` reads a file into a frame of candles sorted by time and lists the rows it refused,
each with its line, column, value and the rule it breaks. The rules:

* **the time unit is decided per row**, from that row's own number (seconds, milliseconds,
  microseconds or nanoseconds since 1970), so a kline file joined from a millisecond month and a
  microsecond month dates every row right; a time that lands before 1970-01-02 or more than a day
  after now under its unit cannot be dated right and is refused, never shifted;
* rows may come in any order: they are **sorted**; a second row with the same time is refused as a
  duplicate (the first in the file is kept), and ``reordered`` says the file was not in order;
* prices must be positive and consistent (high >= open, close >= low), volume not negative;
* the interval is inferred from the data: the most common step between candles (a gap does not
  change it), ``DEFAULT_INTERVAL_MS`` when there are fewer than two candles.

The replay source and the backtests both read candles here, and both take the same four-tick path
through a candle (``candle_prices``, ``candle_times``), so a backtest sees what a replay sees.
Cost: the file is read whole into memory; the checks are vectorised (a million rows in seconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.candles.files import (
    EXPECTED,
    KLINE_COLUMNS,
    OHLCV_COLUMNS,
    PRICES,
    CandleFileError,
    CandleFormat,
    Raw,
    load,
)

__all__ = [
    "DAY_MS",
    "DEFAULT_INTERVAL_MS",
    "EXPECTED",
    "KLINE_COLUMNS",
    "OHLCV_COLUMNS",
    "PRICES",
    "CandleFile",
    "CandleFileError",
    "CandleFormat",
    "CandleProblem",
    "candle_prices",
    "candle_spans",
    "candle_times",
    "read_candles",
    "read_lines",
    "symbol_from_name",
]

DAY_MS = 86_400_000
DEFAULT_INTERVAL_MS = 60_000  # when a file has fewer than two candles to measure
EARLIEST_MS = DAY_MS  # 1970-01-02: anything earlier is a misread unit, not a candle

# The rules a row can break (CandleProblem.reason).
NOT_A_NUMBER = "not a number"
NOT_A_TIME = "not an ISO-8601 date-time"
NON_POSITIVE_TIME = "non-positive time"
BEFORE_1970 = "a time after 1970-01-02 (as seconds, ms, µs or ns since 1970)"
IN_THE_FUTURE = "a time not more than a day after now"
NON_POSITIVE_PRICE = "non-positive price"
HIGH_BELOW_LOW = "high < low"
HIGH_BELOW_OPEN_CLOSE = "high below open/close"
LOW_ABOVE_OPEN_CLOSE = "low above open/close"
NEGATIVE_VOLUME = "negative volume"
DUPLICATE_TIME = "duplicate time"

_BINANCE_NAME = __import__("re").compile(
    r"^([A-Za-z0-9]{2,20})-\d+(?:s|m|h|d|w|mo|M)-\d{4}-\d{2}(?:-\d{2})?\.(?:csv|zip)$"
)


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
    volume``, strictly increasing ``start``), the inferred interval, the refused rows, and whether
    the rows had to be sorted."""

    format: CandleFormat
    frame: pd.DataFrame
    interval_ms: int
    rejected: list[CandleProblem] = field(default_factory=list)
    reordered: bool = False


def _to_float(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def epoch_to_ms(values: np.ndarray) -> np.ndarray:
    """Scale each epoch number to ms by its own magnitude: seconds below 1e11, ms below 1e14, µs
    below 1e17, ns below 1e20 (NaN above)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        scale = np.select([v < 1e11, v < 1e14, v < 1e17, v < 1e20], [1000.0, 1.0, 1e-3, 1e-6], np.nan)
    return v * scale


def _times(raw: Raw) -> tuple[np.ndarray, str]:
    """Each row's start in ms (NaN when unreadable), and the rule an unreadable time breaks."""
    if raw.time_kind == "datetime":
        times = pd.to_datetime(raw.time, utc=True, errors="coerce")
    elif raw.time_kind == "epoch":
        return epoch_to_ms(_to_float(raw.time)), NOT_A_NUMBER
    else:
        numeric = _to_float(raw.time)
        present = raw.time.notna().to_numpy()
        if present.any() and np.isfinite(numeric).sum() * 2 >= present.sum():
            return epoch_to_ms(numeric), NOT_A_NUMBER
        times = pd.to_datetime(raw.time, utc=True, format="ISO8601", errors="coerce")
    out = np.full(len(times), np.nan)
    ok = times.notna().to_numpy()
    out[ok] = times[ok].dt.as_unit("ms").astype("int64").to_numpy()
    return out, NOT_A_TIME


def _ohlcv(raw: Raw) -> Raw:
    """Plain OHLCV files may hold ISO text times instead of epoch numbers."""
    if raw.format == "ohlcv":
        raw.time_kind = "text"
    return raw


def read_candles(path: str | Path, *, max_bytes: int | None = None, now_ms: int | None = None) -> CandleFile:
    """Read a candle file, detecting its layout from the content; raise ``CandleFileError`` when it
    is not a candle file. Rows that break a rule are left out and listed in ``rejected``."""
    path = Path(path)
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise CandleFileError(f"{path.name}: {size} bytes is more than the limit of {max_bytes}")
    raw = _ohlcv(load(path.name, path.read_bytes()))
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return _check(raw, now)


def _check(raw: Raw, now_ms: int) -> CandleFile:
    n = len(raw.lines)
    values = {c: _to_float(raw.values[c]) for c in (*PRICES, "volume")}
    start, time_rule = _times(raw)
    missing = {"time": ~np.isfinite(start), **{c: ~np.isfinite(v) for c, v in values.items()}}
    text_missing = [raw.text[c].isna().to_numpy() for c in raw.text]
    blank = np.logical_and.reduce(text_missing) if text_missing else np.zeros(n, bool)
    o, h, lo, c, v = (values[k] for k in (*PRICES, "volume"))
    with np.errstate(invalid="ignore"):
        checks: list[tuple[str, str, np.ndarray]] = [
            (col, time_rule if col == "time" else NOT_A_NUMBER, m) for col, m in missing.items()
        ]
        checks += [
            ("time", NON_POSITIVE_TIME, start <= 0),
            ("time", BEFORE_1970, (start > 0) & (start < EARLIEST_MS)),
            ("time", IN_THE_FUTURE, start > now_ms + DAY_MS),
        ]
        checks += [(col, NON_POSITIVE_PRICE, values[col] <= 0) for col in PRICES]
        checks += [
            ("high", HIGH_BELOW_LOW, h < lo),
            ("high", HIGH_BELOW_OPEN_CLOSE, h < np.maximum(o, c)),
            ("low", LOW_ABOVE_OPEN_CLOSE, lo > np.minimum(o, c)),
            ("volume", NEGATIVE_VOLUME, v < 0),
        ]
    bad = np.logical_or.reduce([m for _, _, m in checks]) & ~blank
    ok_idx = np.flatnonzero(~bad & ~blank)
    t_ok = np.rint(start[ok_idx]).astype(np.int64)
    order = np.argsort(t_ok, kind="stable")  # by time, then by place in the file
    t_sorted = t_ok[order]
    dup = np.concatenate([[False], t_sorted[1:] == t_sorted[:-1]]) if len(t_sorted) else np.zeros(0, bool)
    dup_mask = np.zeros(n, bool)
    dup_mask[ok_idx[order[dup]]] = True
    checks.append(("time", DUPLICATE_TIME, dup_mask))
    keep = ok_idx[order[~dup]]
    problems = [
        CandleProblem(int(raw.lines[i]), raw.names.get(col, col), _text(raw, col, int(i)), rule)
        for col, rule, mask in checks
        for i in np.flatnonzero(mask & ~blank)
    ]
    problems.sort(key=lambda p: p.line)
    frame = pd.DataFrame(
        {"start": np.rint(start[keep]).astype(np.int64), **{k: values[k][keep] for k in (*PRICES, "volume")}}
    )
    return CandleFile(
        format=raw.format,
        frame=frame,
        interval_ms=infer_interval(frame["start"].to_numpy()),
        rejected=problems,
        reordered=bool(len(t_ok) > 1 and np.any(np.diff(t_ok) < 0)),
    )


def _text(raw: Raw, column: str, i: int) -> str:
    cell = raw.text[column].iloc[i]
    return "" if cell is None or (isinstance(cell, float) and np.isnan(cell)) else str(cell).strip()


def infer_interval(start: np.ndarray) -> int:
    """The most common step between consecutive candles (the smallest of equally common ones)."""
    if len(start) < 2:
        return DEFAULT_INTERVAL_MS
    steps, counts = np.unique(np.diff(start), return_counts=True)
    return int(steps[np.argmax(counts)])


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
