"""Rows read through a column map: the generic template and the entry form (one whole trade per row
-> ``TradeEntry``), and a trader's own mapping of a file (``custom``: fills or whole trades)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import Fill, TradeEntry
from pipeline.journal.formats.cells import (
    _TRADE_SIDES,
    AUTO_DATE_RULE,
    TimeParser,
    _amount,
    _auto_ms,
    _blank,
    _id,
    _key,
    _number,
    _side,
    _strptime,
    _symbol,
    _tags,
    _text,
    _time,
)
from pipeline.messages import Side

_UNIX = re.compile(r"\d+(?:\.\d+)?")
_OFFSET_END = re.compile(r"(?:Z|[+-]\d{2}:?\d{2}|UTC)$")

TRADE_FIELDS = (
    "trade_id",
    "symbol",
    "side",
    "entry_price",
    "exit_price",
    "quantity",
    "entry_time",
    "exit_time",
    "pnl",
    "notes",
    "fees",
    "stop_loss",
    "tags",
    "setup",
    "emotion",
)
TRADE_REQUIRED = ("symbol", "side", "entry_price", "quantity", "entry_time")
FILL_FIELDS = ("symbol", "side", "price", "quantity", "time", "fee", "fee_asset", "exchange_id")
FILL_REQUIRED = ("symbol", "side", "price", "quantity", "time")
MAPPING_OPTIONS = ("kind", "time_format", "side_buy", "side_sell", "timezone", "currency")


def _side_rule(words: Mapping[str, Side]) -> str:
    return "one of " + ", ".join(w.upper() for w in words)


class _Mapped:
    """A parser reading fields through a field -> column map (unmapped fields read as missing)."""

    def __init__(
        self, cols: dict[str, str | None], parse_time: TimeParser, time_rule: str, sides: dict[str, Side]
    ) -> None:
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
        # The readers append a violation whenever they return None for a required field.
        assert pair is not None and side is not None and price is not None and qty is not None and time is not None
        fee_asset = _id(cell("fee_asset")[1])
        return Fill(
            pair[0],
            side,
            price,
            qty,
            time,
            fee,
            ((fee_asset.upper() if fee_asset else suffix) if fee is not None else None),
            _id(cell("exchange_id")[1]),
        )


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
        # The readers append a violation whenever they return None for a required field.
        assert pair is not None and side is not None and entry is not None and qty is not None
        assert entry_time is not None
        if pnl is None and exit_ is not None:
            pnl = (exit_ - entry) * qty if side == "BUY" else (entry - exit_) * qty
            pnl -= fees or 0.0
        return TradeEntry(
            symbol=pair[0],
            side=side,
            entry_price=entry,
            quantity=qty,
            entry_time=entry_time,
            exit_price=exit_,
            exit_time=exit_time,
            pnl=pnl,
            fees=fees,
            stop_loss=stop,
            notes=_text(cell("notes")[1]),
            tags=_tags(cell("tags")[1]),
            setup=_text(cell("setup")[1]),
            emotion=_text(cell("emotion")[1]),
            external_id=_id(cell("trade_id")[1]),
        )


def _custom(header: tuple[str, ...], mapping: Mapping[str, str]) -> _CustomFill | _Trade:
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
    bad += [Violation(t, None, "required: map a column of the file to it") for t in required if not mapping.get(t)]
    sides = dict(_TRADE_SIDES)
    for option, side in (("side_buy", "BUY"), ("side_sell", "SELL")):
        for word in (mapping.get(option) or "").split(","):
            if word.strip():
                sides[word.strip().lower()] = side  # type: ignore[assignment]
    if bad:
        raise BadMessageError(bad)
    fmt = mapping.get("time_format")
    parse, rule = (_strptime(fmt), f"a date in the form {fmt}") if fmt else (_auto_ms, AUTO_DATE_RULE)
    if mapping.get("timezone"):
        parse = _zoned(parse, mapping["timezone"])
    cls = _CustomFill if kind == "fill" else _Trade
    return cls(cols, parse, rule, sides)


def _zoned(parse: TimeParser, name: str) -> TimeParser:
    """Read wall-clock times (no offset, not Unix numbers) as times in the zone ``name``."""
    from datetime import UTC, datetime

    from pipeline.journal.formats.layout import _local_ms, zone_of

    zone = zone_of(name)

    def local(v: object) -> int | None:
        ms = parse(v)
        if ms is None or not isinstance(v, str) or _UNIX.fullmatch(v.strip()) or _OFFSET_END.search(v.strip()):
            return ms
        wall = datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)
        return _local_ms(wall, zone)

    return local


def _generic(header: tuple[str, ...]) -> _Trade:
    actual = {_key(h): h for h in header}
    cols: dict[str, str | None] = {f: actual.get(f) for f in TRADE_FIELDS}
    cols["fees"] = cols["fees"] or actual.get("fee")
    return _Trade(cols, _auto_ms, AUTO_DATE_RULE, _TRADE_SIDES)
