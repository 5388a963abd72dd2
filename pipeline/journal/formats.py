"""Read one row of a trade file or of the entry form into a ``Fill`` or a ``TradeEntry``.

Formats: Binance and Bybit spot exports (one execution per row -> ``Fill``), the generic template
and the entry form (one whole trade per row -> ``TradeEntry``), and a trader's own column mapping
(``custom``). Every bad field of a row is named at once in one ``BadMessageError``: the column as
the trader sees it, the value as received and the rule in words. Pure: no I/O, no pandas.

``row_parser`` builds a parser for one header once (column lookups resolved, cached), so a file of
a million rows pays for them once; ``parse_row`` is the one-row convenience over it. Text cells
(notes, setup, emotion, tags) are kept exactly as given, formulas included; ``escape_cell`` makes
them safe when written back to a CSV.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Literal

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import Fill, TradeEntry, normalize_symbol, split_symbol
from pipeline.messages import Side

Format = Literal["binance-spot", "bybit-spot", "generic", "manual", "custom"]
FORMATS: tuple[str, ...] = ("binance-spot", "bybit-spot", "generic", "manual", "custom")
RowParser = Callable[[Mapping[str, object], int], "Fill | TradeEntry"]

FUTURE_SLACK_MS = 5 * 60_000
NUMBER_RULE = "a number like 1234.5"
SYMBOL_RULE = "a pair of 2 to 20 letters or digits like BTCUSDT or BTC/USDT"
AUTO_DATE_RULE = "a date like 2024-11-16T14:35:02Z or 2024-11-16 14:35:02 (UTC), or Unix seconds or milliseconds"
BINANCE_DATE_RULE = "a date like 2024-11-16 14:35:02 (UTC)"
BYBIT_DATE_RULE = "a date like 14:35 2024-11-16 (UTC)"
FUTURE_RULE = "a date not in the future"
EPOCH_RULE = "a date after 1970-01-01"

BINANCE_COLUMNS = ("Date(UTC)", "Pair", "Side", "Price", "Executed", "Amount", "Fee")
BYBIT_COLUMNS = ("Spot Pairs", "Order Type", "Direction", "Filled Value", "Filled Price", "Filled Quantity",
                 "Fees", "Transaction ID", "Order No.", "Timestamp (UTC)")
TRADE_FIELDS = ("trade_id", "symbol", "side", "entry_price", "exit_price", "quantity", "entry_time",
                "exit_time", "pnl", "notes", "fees", "stop_loss", "tags", "setup", "emotion")
TRADE_REQUIRED = ("symbol", "side", "entry_price", "quantity", "entry_time")
FILL_FIELDS = ("symbol", "side", "price", "quantity", "time", "fee", "fee_asset", "exchange_id")
FILL_REQUIRED = ("symbol", "side", "price", "quantity", "time")
MAPPING_OPTIONS = ("kind", "time_format", "side_buy", "side_sell")

_EXCHANGE_SIDES: dict[str, Side] = {"buy": "BUY", "sell": "SELL"}
_TRADE_SIDES: dict[str, Side] = {"buy": "BUY", "sell": "SELL", "b": "BUY", "s": "SELL",
                                 "long": "BUY", "short": "SELL"}
_THOUSANDS = re.compile(r"\s*[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?\s*")
_SUFFIXED = re.compile(r"\s*([+-]?(?:\d[\d,]*(?:\.\d*)?|\.\d+))\s*([A-Za-z][A-Za-z0-9]*)\s*")
_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")
_PAIR_PARTS = re.compile(r"\s*([A-Za-z0-9]+)\s*[/\-_:]\s*([A-Za-z0-9]+)\s*")
_UNIX = re.compile(r"\d+(?:\.\d+)?")
_BYBIT_TIME = re.compile(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(\d{4}-\d{2}-\d{2})\s*")
_TAG_SPLIT = re.compile(r"[;|,]")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)
_CACHE_LIMIT = 10_000
_pairs: dict[str, tuple[str, str | None, str | None] | None] = {}

TimeParser = Callable[[object], "int | None"]


def _key(name: str) -> str:
    """Return a column name as compared: no BOM, no outer spaces, lower case, inner spaces as ``_``."""
    return "_".join(name.lstrip("\ufeff").strip().lower().split())


# --------------------------------------------------------------------------- detection


_BINANCE_KEYS = {_key(c) for c in BINANCE_COLUMNS}
_BYBIT_KEYS = {_key(c) for c in ("Spot Pairs", "Direction", "Filled Price", "Filled Quantity", "Timestamp (UTC)")}


def detect_format(header: list[str]) -> str | None:
    """Return the format of a file from its header row, or None when a column mapping is needed."""
    keys = {_key(str(h)) for h in header}
    if _BINANCE_KEYS <= keys:
        return "binance-spot"
    if _BYBIT_KEYS <= keys:
        return "bybit-spot"
    if set(TRADE_REQUIRED) <= keys:
        return "generic"
    return None


# --------------------------------------------------------------------------- cells


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


def _amount(bad: list[Violation], col: str, v: object, assets: tuple[str | None, ...], rule: str,
            *, required: bool) -> tuple[float | None, str | None]:
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
            if m:
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


def _time(bad: list[Violation], col: str, v: object, now_ms: int, parse: TimeParser, rule: str,
          *, required: bool = True) -> int | None:
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


# --------------------------------------------------------------------------- parsers


def _columns(header: Sequence[str], wanted: Sequence[str]) -> dict[str, str]:
    """Return canonical column -> the header's own spelling (the canonical name when absent)."""
    actual = {_key(h): h for h in header}
    return {w: actual.get(_key(w), w) for w in wanted}


def _exchange_fill(bad: list[Violation], get: Callable[[str], object], c_pair: str, c_side: str, c_price: str,
                   c_qty: str, c_value: str) -> tuple[Any, str | None, str | None, Any, Any, Any]:
    """Read what every exchange export has: pair, side, price, quantity, and the quote value
    (checked as a number only: the fill is price x quantity)."""
    pair = _symbol(bad, c_pair, get(c_pair))
    base, quote = (pair[1], pair[2]) if pair else (None, None)
    side = _side(bad, c_side, get(c_side), _EXCHANGE_SIDES, "one of BUY, SELL")
    price = _number(bad, c_price, get(c_price), "> 0", required=True)
    qty, _ = _amount(bad, c_qty, get(c_qty), (base,), "> 0", required=True)
    _amount(bad, c_value, get(c_value), (quote,), ">= 0", required=False)
    return pair, base, quote, side, price, qty


class _Binance:
    """Binance spot trade history, with or without the ``Fee Coin`` column."""

    def __init__(self, header: Sequence[str]) -> None:
        cols = _columns(header, (*BINANCE_COLUMNS, "Fee Coin"))
        self.cols = tuple(cols.values())

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        c_date, c_pair, c_side, c_price, c_exec, c_amount, c_fee, c_coin = self.cols
        get = row.get
        bad: list[Violation] = []
        pair, base, quote, side, price, qty = _exchange_fill(bad, get, c_pair, c_side, c_price, c_exec, c_amount)
        fee, fee_asset = _amount(bad, c_fee, get(c_fee), (base, quote, "BNB"), ">= 0", required=False)
        coin = get(c_coin)
        if isinstance(coin, str) and coin.strip():
            fee_asset = coin.strip().upper()
        time = _time(bad, c_date, get(c_date), now_ms, _iso_ms, BINANCE_DATE_RULE)
        if bad:
            raise BadMessageError(bad)
        return Fill(pair[0], side, price, qty, time,  # type: ignore[arg-type,index]
                    fee, fee_asset if fee is not None else None)


class _Bybit:
    """Bybit spot order history; fees are charged in the asset received unless the cell says."""

    def __init__(self, header: Sequence[str]) -> None:
        self.cols = tuple(_columns(header, BYBIT_COLUMNS).values())

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        c_pair, _, c_side, c_value, c_price, c_qty, c_fee, c_txid, _, c_time = self.cols
        get = row.get
        bad: list[Violation] = []
        pair, base, quote, side, price, qty = _exchange_fill(bad, get, c_pair, c_side, c_price, c_qty, c_value)
        fee, fee_asset = _amount(bad, c_fee, get(c_fee), (base, quote), ">= 0", required=False)
        time = _time(bad, c_time, get(c_time), now_ms, _bybit_ms, BYBIT_DATE_RULE)
        if bad:
            raise BadMessageError(bad)
        if fee is not None and fee_asset is None:
            fee_asset = base if side == "BUY" else quote
        return Fill(pair[0], side, price, qty, time,  # type: ignore[arg-type,index]
                    fee, fee_asset if fee is not None else None, _id(get(c_txid)))


def _side_rule(words: Mapping[str, Side]) -> str:
    return "one of " + ", ".join(w.upper() for w in words)


class _Mapped:
    """A parser reading fields through a field -> column map (unmapped fields read as missing)."""

    def __init__(self, cols: dict[str, str | None], parse_time: TimeParser, time_rule: str,
                 sides: dict[str, Side]) -> None:
        self.cols, self.parse_time, self.time_rule = cols, parse_time, time_rule
        self.sides, self.side_rule = sides, _side_rule(sides)

    def _cells(self, row: Mapping[str, object]) -> Callable[[str], tuple[str, object]]:
        cols, get = self.cols, row.get

        def cell(field: str) -> tuple[str, object]:
            col = cols.get(field)
            return (col, get(col)) if col else (field, None)
        return cell


class _CustomFill(_Mapped):
    """One execution per row through a trader's column mapping."""

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        cell = self._cells(row)
        bad: list[Violation] = []
        pair = _symbol(bad, *cell("symbol"))
        base, quote = (pair[1], pair[2]) if pair else (None, None)
        side = _side(bad, *cell("side"), self.sides, self.side_rule)
        price, _ = _amount(bad, *cell("price"), (quote,), "> 0", required=True)
        qty, _ = _amount(bad, *cell("quantity"), (base,), "> 0", required=True)
        fee, suffix = _amount(bad, *cell("fee"), (base, quote), ">= 0", required=False)
        time = _time(bad, *cell("time"), now_ms, self.parse_time, self.time_rule)
        if bad:
            raise BadMessageError(bad)
        fee_asset = _id(cell("fee_asset")[1])
        return Fill(pair[0], side, price, qty, time, fee,  # type: ignore[arg-type,index]
                    ((fee_asset.upper() if fee_asset else suffix) if fee is not None else None),
                    _id(cell("exchange_id")[1]))


class _Trade(_Mapped):
    """A whole trade per row: the generic template, the entry form, or a custom mapping."""

    def __call__(self, row: Mapping[str, object], now_ms: int) -> TradeEntry:
        cell = self._cells(row)
        bad: list[Violation] = []
        pair = _symbol(bad, *cell("symbol"))
        side = _side(bad, *cell("side"), self.sides, self.side_rule)
        entry = _number(bad, *cell("entry_price"), "> 0", required=True)
        qty = _number(bad, *cell("quantity"), "> 0", required=True)
        (c_exit, v_exit), (c_xt, v_xt) = cell("exit_price"), cell("exit_time")
        exit_ = _number(bad, c_exit, v_exit, "> 0", required=False)
        entry_time = _time(bad, *cell("entry_time"), now_ms, self.parse_time, self.time_rule)
        exit_time = _time(bad, c_xt, v_xt, now_ms, self.parse_time, self.time_rule, required=False)
        if _blank(v_exit) != _blank(v_xt):
            missing, given = (c_exit, c_xt) if _blank(v_exit) else (c_xt, c_exit)
            bad.append(Violation(missing, v_exit if _blank(v_exit) else v_xt, f"given together with {given}"))
        if exit_time is not None and entry_time is not None and exit_time < entry_time:
            bad.append(Violation(c_xt, v_xt, f"not before {cell('entry_time')[0]}"))
        pnl = _number(bad, *cell("pnl"), None, required=False)
        fees = _number(bad, *cell("fees"), ">= 0", required=False)
        stop = _number(bad, *cell("stop_loss"), "> 0", required=False)
        if bad:
            raise BadMessageError(bad)
        if pnl is None and exit_ is not None:
            pnl = (exit_ - entry) * qty if side == "BUY" else (entry - exit_) * qty  # type: ignore[operator]
            pnl -= fees or 0.0
        return TradeEntry(
            symbol=pair[0], side=side,  # type: ignore[arg-type,index]
            entry_price=entry, quantity=qty, entry_time=entry_time,  # type: ignore[arg-type]
            exit_price=exit_, exit_time=exit_time, pnl=pnl, fees=fees, stop_loss=stop,
            notes=_text(cell("notes")[1]), tags=_tags(cell("tags")[1]), setup=_text(cell("setup")[1]),
            emotion=_text(cell("emotion")[1]),
            external_id=_id(cell("trade_id")[1]))


def _custom(header: tuple[str, ...], mapping: Mapping[str, str]) -> RowParser:
    bad: list[Violation] = []
    kind = mapping.get("kind") or ("fill" if "price" in mapping or "time" in mapping else "trade")
    if kind not in ("fill", "trade"):
        raise BadMessageError([Violation("kind", kind, "one of fill, trade")])
    fields, required = (FILL_FIELDS, FILL_REQUIRED) if kind == "fill" else (TRADE_FIELDS, TRADE_REQUIRED)
    actual = {_key(h): h for h in header}
    cols: dict[str, str | None] = {}
    for target, column in mapping.items():
        if target in MAPPING_OPTIONS:
            continue
        if target not in fields:
            bad.append(Violation(target, column, f"a target of a {kind}: one of {', '.join(fields)}"))
        elif column and _key(column) in actual:
            cols[target] = actual[_key(column)]
        elif column:
            bad.append(Violation(target, column, "a column of the file: " + ", ".join(header)))
    bad += [Violation(t, None, "required: map a column of the file to it")
            for t in required if not mapping.get(t)]
    sides = dict(_TRADE_SIDES)
    for option, side in (("side_buy", "BUY"), ("side_sell", "SELL")):
        for word in (mapping.get(option) or "").split(","):
            if word.strip():
                sides[word.strip().lower()] = side  # type: ignore[assignment]
    if bad:
        raise BadMessageError(bad)
    fmt = mapping.get("time_format")
    parse, rule = (_strptime(fmt), f"a date in the form {fmt}") if fmt else (_auto_ms, AUTO_DATE_RULE)
    cls = _CustomFill if kind == "fill" else _Trade
    return cls(cols, parse, rule, sides)  # type: ignore[return-value]


def _generic(header: tuple[str, ...]) -> _Trade:
    actual = {_key(h): h for h in header}
    cols: dict[str, str | None] = {f: actual.get(f) for f in TRADE_FIELDS}
    cols["fees"] = cols["fees"] or actual.get("fee")
    return _Trade(cols, _auto_ms, AUTO_DATE_RULE, _TRADE_SIDES)


@lru_cache(maxsize=256)
def _cached(fmt: str, header: tuple[str, ...], mapping: tuple[tuple[str, str], ...] | None) -> RowParser:
    if mapping is not None or fmt == "custom":
        if mapping is None:
            raise BadMessageError([Violation("mapping", None, "a column mapping for format custom")])
        return _custom(header, dict(mapping))
    if fmt == "binance-spot":
        return _Binance(header)
    if fmt == "bybit-spot":
        return _Bybit(header)
    if fmt in ("generic", "manual"):
        return _generic(header)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def row_parser(fmt: str, header: Sequence[str], mapping: Mapping[str, str] | None = None) -> RowParser:
    """Return ``parse(row, now_ms)`` for rows under ``header``; cached per (format, header, mapping).

    Raises ``BadMessageError`` for a custom mapping that misses required targets or names columns
    the header does not have.
    """
    frozen = None
    if mapping is not None:
        frozen = tuple(sorted((str(k), "" if v is None else str(v)) for k, v in mapping.items()))
    return _cached(fmt, tuple(header), frozen)


def parse_row(fmt: str, row: Mapping[str, object], mapping: Mapping[str, str] | None = None, *,
              now_ms: int) -> Fill | TradeEntry:
    """Parse one row (column -> cell) of ``fmt``; raise ``BadMessageError`` naming every bad field."""
    return row_parser(fmt, tuple(row), mapping)(row, now_ms)


def escape_cell(value: str) -> str:
    """Return ``value`` safe for a CSV export: a ``'`` before a leading ``= + - @``, tab or CR (OWASP)."""
    return "'" + value if value and value[0] in "=+-@\t\r" else value
