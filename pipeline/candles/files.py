"""The layouts of candle files, read into raw columns before any rule is checked.

* Binance public-data klines: 12 columns, headerless or with a header (``open_time,...`` or a
  user's ``Opentime,Open,...``);
* plain OHLCV CSVs: ``timestamp,open,high,low,close,volume`` (epoch numbers or ISO text);
* dated OHLC CSVs as Yahoo and backtrader write them: ``Date,Open,High,Low,Close[,Adj Close],
  Volume[,OpenInterest]``, ``Datetime,...``, a ``Date,Time,...`` pair, and the backtrader files whose
  header lacks the ``Time`` its rows carry;
* freqtrade's JSON (``[[ms, o, h, l, c, v], ...]``) and feather files (a ``date`` column).

``load`` returns a ``Raw``: the time column as read (``time``: numbers, text, or datetimes), the
prices and volume as read, and each row's line in the file (or its index + 1 where a file has no
lines). Pure but for reading the file's bytes.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

CandleFormat = Literal["binance-klines", "ohlcv", "dated", "freqtrade-json", "feather"]
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
EXPECTED = (
    "a Binance kline CSV (12 columns " + ",".join(KLINE_COLUMNS) + ", header optional), "
    "a CSV with the header " + ",".join(OHLCV_COLUMNS) + ", a dated CSV (Date,Open,High,Low,Close,Volume "
    "as Yahoo writes it, or Date,Time,...), or a freqtrade .json or .feather candle file"
)
_CLOCK = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")


class CandleFileError(PipelineError):
    """A file that is not a candle file at all (wrong columns, empty, too large): refused whole."""


@dataclass
class Raw:
    """Columns as read: ``time`` (object or float), the prices and volume (object or float), the
    line of each row, the name each column has in the file (for problems), and the cell text."""

    format: CandleFormat
    time: pd.Series
    values: dict[str, pd.Series]
    lines: np.ndarray
    names: dict[str, str]
    time_kind: Literal["epoch", "text", "datetime"]
    text: dict[str, pd.Series]


def _key(cell: str) -> str:
    return re.sub(r"[\s_]", "", cell.strip().strip('"').lower())


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


def load(name: str, data: bytes) -> Raw:
    """Read a candle file's bytes (``name`` for messages and the extension); raise ``CandleFileError``."""
    if data.startswith(b"ARROW1"):
        return _feather(name, data)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    skipped, first = _first_line(data)
    if not first:
        raise CandleFileError(f"{name}: the file is empty; expected {EXPECTED}")
    if first.startswith("["):
        return _json(name, data)
    return _csv(name, data, skipped, first)


def _csv(name: str, data: bytes, skipped: int, first: str) -> Raw:
    cells = next(csv.reader([first]))
    keys = [_key(c) for c in cells]
    n_fields = _width_of_rows(data, skipped)
    if keys[0] == "opentime" or (len(cells) == len(KLINE_COLUMNS) and all(_is_number(c) for c in cells[:6])):
        header = keys[0] == "opentime"
        index = {c: i for i, c in enumerate(KLINE_COLUMNS)}
        return _frame(name, data, skipped, header, "binance-klines", "open_time", index, cells if header else None)
    if set(OHLCV_COLUMNS) <= set(keys):
        index = {c: keys.index(c) for c in OHLCV_COLUMNS}
        return _frame(name, data, skipped, True, "ohlcv", "timestamp", index, cells)
    date_key = next((k for k in ("datetime", "date") if k in keys), None)
    if date_key is not None and all(p in keys for p in PRICES):
        index = {c: keys.index(c) for c in PRICES}
        index["volume"] = keys.index("volume") if "volume" in keys else -1
        index["date"] = keys.index(date_key)
        names = dict(zip(keys, cells))
        if "time" in keys:
            index["time"] = keys.index("time")
        elif n_fields == len(cells) + 1 and _second_is_clock(data, skipped):
            # backtrader's minute files: the header lacks the Time its rows carry after Date
            index = {c: (i + 1 if i > index["date"] else i) for c, i in index.items()}
            index["time"] = index["date"] + 1
            names = {**names, "time": "Time (column 2, missing from the header)"}
        return _dated(name, data, skipped, index, names)
    shown = first if len(first) <= 100 else first[:100] + "..."
    raise CandleFileError(f"{name}: not a candle file: expected {EXPECTED}; found {len(cells)} columns: {shown!r}")


def _width_of_rows(data: bytes, skipped: int) -> int:
    lines = data[:8192].decode("utf-8", "replace").splitlines()[skipped + 1 : skipped + 6]
    widths = [len(next(csv.reader([ln]))) for ln in lines if ln.strip()]
    return max(set(widths), key=widths.count) if widths else 0


def _second_is_clock(data: bytes, skipped: int) -> bool:
    lines = data[:8192].decode("utf-8", "replace").splitlines()[skipped + 1 : skipped + 4]
    rows = [next(csv.reader([ln])) for ln in lines if ln.strip()]
    return bool(rows) and all(len(r) > 1 and _CLOCK.fullmatch(r[1].strip()) for r in rows)


def _read(name: str, data: bytes, skip: int, usecols: list[int]) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.BytesIO(data), header=None, skiprows=skip, usecols=usecols, skip_blank_lines=False, dtype=str
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame({i: pd.Series(dtype=object) for i in sorted(usecols)})
    except (pd.errors.ParserError, ValueError) as exc:
        raise CandleFileError(f"{name}: cannot parse as CSV: {' '.join(str(exc).split())}") from None


def _frame(
    name: str,
    data: bytes,
    skipped: int,
    header: bool,
    fmt: CandleFormat,
    time_col: str,
    index: dict[str, int],
    cells: list[str] | None,
) -> Raw:
    wanted = [time_col, *PRICES, "volume"]
    raw = _read(name, data, skipped + header, [index[c] for c in wanted])
    by_index = {index[c]: c for c in wanted}
    raw.columns = [by_index[i] for i in raw.columns]
    names = {("time" if c == time_col else c): (cells[index[c]].strip().strip('"') if cells else c) for c in wanted}
    first_line = skipped + header + 1
    text = {("time" if c == time_col else c): raw[c] for c in wanted}
    values = {c: raw[c] for c in (*PRICES, "volume")}
    return Raw(fmt, raw[time_col], values, np.arange(len(raw)) + first_line, names, "epoch", text)


def _dated(name: str, data: bytes, skipped: int, index: dict[str, int], names: dict[str, str]) -> Raw:
    cols = sorted({i for c, i in index.items() if i >= 0})
    raw = _read(name, data, skipped + 1, cols)
    get = {c: raw[i] for c, i in index.items() if i >= 0}
    when = get["date"].astype(object)
    if "time" in get:
        when = when.where(when.isna(), when.astype(str).str.strip() + " " + get["time"].astype(str).str.strip())
    volume = get.get("volume", pd.Series(["0"] * len(raw), dtype=object))
    values = {c: get[c] for c in PRICES} | {"volume": volume}
    label = {c: names.get(c, c.capitalize()) for c in (*PRICES, "volume")}
    label["time"] = names.get("datetime", names.get("date", "Date"))
    text = {"time": when, **values}
    return Raw("dated", when, values, np.arange(len(raw)) + skipped + 2, label, "text", text)


def _json(name: str, data: bytes) -> Raw:
    import orjson

    try:
        rows = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CandleFileError(f"{name}: not a candle file: the JSON cannot be read ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) >= 6 for r in rows):
        raise CandleFileError(f"{name}: not a candle file: expected freqtrade's JSON [[ms, o, h, l, c, v], ...]")
    frame = pd.DataFrame([r[:6] for r in rows], columns=["time", *PRICES, "volume"], dtype=object)
    values = {c: frame[c] for c in (*PRICES, "volume")}
    names = {"time": "date", **{c: c for c in (*PRICES, "volume")}}
    text = {c: frame[c].astype(str) for c in frame.columns}
    return Raw("freqtrade-json", frame["time"], values, np.arange(len(frame)) + 1, names, "epoch", text)


def _feather(name: str, data: bytes) -> Raw:
    try:
        frame = pd.read_feather(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own error types for damaged files
        raise CandleFileError(f"{name}: the feather file cannot be read: {type(exc).__name__}: {exc}") from None
    missing = [c for c in ("date", *PRICES, "volume") if c not in frame.columns]
    if missing:
        raise CandleFileError(f"{name}: not a freqtrade candle file: no column {', '.join(missing)}")
    values = {c: frame[c] for c in (*PRICES, "volume")}
    names = {"time": "date", **{c: c for c in (*PRICES, "volume")}}
    text = {"time": frame["date"].astype(str), **{c: frame[c].astype(str) for c in (*PRICES, "volume")}}
    return Raw("feather", frame["date"], values, np.arange(len(frame)) + 1, names, "datetime", text)
