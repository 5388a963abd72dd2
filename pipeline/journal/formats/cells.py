"""Cells of a trade file, read exactly or refused: numbers, amounts with an asset, sides, pairs, times.

Each reader appends a ``Violation`` (the column as the trader sees it, the value as received, the
rule in words) to the row's list instead of raising, so a row names every bad field at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta

from pipeline.errors import Violation
from pipeline.journal.fills import normalize_symbol, split_symbol
from pipeline.messages import Side

FUTURE_SLACK_MS = 5 * 60_000
NUMBER_RULE = "a number like 1234.5"
SYMBOL_RULE = "a pair of 2 to 20 letters or digits like BTCUSDT or BTC/USDT"
AUTO_DATE_RULE = "a date like 2024-11-16T14:35:02Z or 2024-11-16 14:35:02 (UTC), or Unix seconds or milliseconds"
BINANCE_DATE_RULE = "a date like 2024-11-16 14:35:02 (UTC)"
BYBIT_DATE_RULE = "a date like 14:35 2024-11-16 (UTC)"
FUTURE_RULE = "a date not in the future"
EPOCH_RULE = "a date after 1970-01-01"

_EXCHANGE_SIDES: dict[str, Side] = {"buy": "BUY", "sell": "SELL"}
_TRADE_SIDES: dict[str, Side] = {"buy": "BUY", "sell": "SELL", "b": "BUY", "s": "SELL", "long": "BUY", "short": "SELL"}
_THOUSANDS = re.compile(r"\s*[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?\s*")
_SUFFIXED = re.compile(r"\s*([+-]?(?:\d[\d,]*(?:\.\d*)?|\.\d+))\s*([A-Za-z][A-Za-z0-9]*)\s*")
_EXPONENT = re.compile(r"[eE]\d+")  # "1e999" is a number out of range, not 1 of the asset "E999"
_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")
_PAIR_PARTS = re.compile(r"\s*([A-Za-z0-9]+)\s*[/\-_:]\s*([A-Za-z0-9]+)\s*")
_UNIX = re.compile(r"\d+(?:\.\d+)?")
_BYBIT_TIME = re.compile(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(\d{4}-\d{2}-\d{2})\s*")
_TAG_SPLIT = re.compile(r"[;|,]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)
_CACHE_LIMIT = 10_000
_pairs: dict[str, tuple[str, str | None, str | None] | None] = {}

TimeParser = Callable[[object], "int | None"]


def _key(name: str) -> str:
    """Return a column name as compared: no BOM, no outer spaces, lower case, inner spaces as ``_``."""
    return "_".join(name.lstrip("\ufeff").strip().lower().split())


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _num(v: object) -> float | None:
    """Return a finite float from ``1234.5``, `` 1,234.5 ``, an int or a float; None if it is none."""
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            if not _THOUSANDS.fullmatch(v):
                return None
            x = float(v.replace(",", ""))
        else:
            if "_" in v:
                return None
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        x = float(v)
    else:
        return None
    return x if math.isfinite(x) else None


def _bounded(bad: list[Violation], col: str, v: object, x: float, rule: str | None) -> float | None:
    if (rule == "> 0" and x <= 0) or (rule == ">= 0" and x < 0):
        bad.append(Violation(col, v, rule))
        return None
    return x


def _number(bad: list[Violation], col: str, v: object, rule: str | None, *, required: bool) -> float | None:
    """Return the number in a cell; ``rule`` is ``"> 0"``, ``">= 0"`` or None (any sign)."""
    x = _num(v)
    if x is None:
        if not _blank(v):
            bad.append(Violation(col, v, NUMBER_RULE))
        elif required:
            bad.append(Violation(col, v, "required"))
        return None
    return _bounded(bad, col, v, x, rule)


def _amount(
    bad: list[Violation], col: str, v: object, assets: tuple[str | None, ...], rule: str, *, required: bool
) -> tuple[float | None, str | None]:
    """Return (number, asset) of a cell like ``0.1800000000SOL``; a bare number has no asset."""
    x: float | None = None
    asset: str | None = None
    if isinstance(v, str):
        s = v.strip()
        for known in assets:
            if known and s.endswith(known) and len(s) > len(known):
                x = _num(s[: -len(known)])
                if x is not None:
                    asset = known
                    break
        if x is None and _num(s) is None:
            m = _SUFFIXED.fullmatch(s)
            if m and not _EXPONENT.fullmatch(m[2]):
                x = _num(m[1])
                asset = m[2].upper()
    if x is None:
        return _number(bad, col, v, rule, required=required), None
    return _bounded(bad, col, v, x, rule), asset


def _side(bad: list[Violation], col: str, v: object, words: Mapping[str, Side], rule: str) -> Side | None:
    side = words.get(v.strip().lower()) if isinstance(v, str) else None
    if side is None:
        bad.append(Violation(col, v, "required" if _blank(v) else rule))
    return side


def _pair(v: str) -> tuple[str, str | None, str | None] | None:
    """Return (symbol, base, quote) of a pair cell; base and quote are None when unknown."""
    hit = _pairs.get(v, False)
    if hit is not False:
        return hit  # type: ignore[return-value]
    symbol = normalize_symbol(v)
    result: tuple[str, str | None, str | None] | None = None
    if _SYMBOL.fullmatch(symbol):
        parts = _PAIR_PARTS.fullmatch(v)
        split = (parts[1].upper(), parts[2].upper()) if parts else split_symbol(symbol)
        result = (symbol, *split) if split else (symbol, None, None)
    if len(_pairs) < _CACHE_LIMIT:
        _pairs[v] = result
    return result


def _symbol(bad: list[Violation], col: str, v: object) -> tuple[str, str | None, str | None] | None:
    pair = _pair(v) if isinstance(v, str) else None
    if pair is None:
        bad.append(Violation(col, v, "required" if _blank(v) else SYMBOL_RULE))
    return pair


def _text(v: object) -> str | None:
    if v is None or v == "":
        return None
    return v if isinstance(v, str) else str(v)


def _id(v: object) -> str | None:
    text = _text(v)
    return text.strip() or None if text else None


def _tags(v: object) -> tuple[str, ...]:
    if isinstance(v, (list, tuple)):
        items = [str(t) for t in v]
    elif isinstance(v, str):
        items = _TAG_SPLIT.split(v)
    else:
        return ()
    return tuple(t.strip() for t in items if t.strip())


# --------------------------------------------------------------------------- times


def _dt_ms(dt: datetime) -> int:
    return (dt - (_EPOCH_NAIVE if dt.tzinfo is None else _EPOCH)) // _MS


def _iso_ms(v: object) -> int | None:
    if not isinstance(v, str):
        return None
    s = v.strip()
    if s.endswith("UTC"):
        s = s[:-3].rstrip()
    try:
        return _dt_ms(datetime.fromisoformat(s))
    except ValueError:
        return None


def _epoch_ms(x: float) -> int | None:
    if not math.isfinite(x) or x <= 0:
        return None
    if x < 1e11:  # Unix seconds up to the year 5138; milliseconds from 1973 on
        return round(x * 1000)
    return round(x) if x < 1e14 else None


def _auto_ms(v: object) -> int | None:
    """Return Unix ms of ISO-8601 text (no zone = UTC), Unix s/ms numbers, or date objects."""
    if isinstance(v, str):
        s = v.strip()
        return _epoch_ms(float(s)) if _UNIX.fullmatch(s) else _iso_ms(s)
    if isinstance(v, datetime):
        return _dt_ms(v)
    if isinstance(v, date):
        return _dt_ms(datetime(v.year, v.month, v.day))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _epoch_ms(float(v))
    return None


def _bybit_ms(v: object) -> int | None:
    m = _BYBIT_TIME.fullmatch(v) if isinstance(v, str) else None
    if m is None:
        return _auto_ms(v)
    return _iso_ms(f"{m[4]} {int(m[1]):02d}:{m[2]}:{m[3] or '00'}")


def _strptime(fmt: str) -> TimeParser:
    def parse(v: object) -> int | None:
        if not isinstance(v, str):
            return _auto_ms(v) if isinstance(v, (date, int, float)) else None
        try:
            return _dt_ms(datetime.strptime(v.strip(), fmt))
        except ValueError:
            return None

    return parse


def _time(
    bad: list[Violation], col: str, v: object, now_ms: int, parse: TimeParser, rule: str, *, required: bool = True
) -> int | None:
    if _blank(v):
        if required:
            bad.append(Violation(col, v, "required"))
        return None
    ms = parse(v)
    if ms is None:
        bad.append(Violation(col, v, rule))
    elif ms <= 0:
        bad.append(Violation(col, v, EPOCH_RULE))
    elif ms > now_ms + FUTURE_SLACK_MS:
        bad.append(Violation(col, v, FUTURE_RULE))
    else:
        return ms
    return None
