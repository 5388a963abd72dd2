"""Exchange and broker layouts described as data: which column holds what, and how to read it.

A ``Layout`` names a format (``kraken-trades``), says how to recognise its header (every key of
``signature`` present, none of ``absent``) and how to read a row into a ``Fill`` (a ``Spec``). One
``SpecFill`` reads every spec'd layout, so each exchange module is a short table of facts, and a
rule (a bad number, a side word, a date that is not in the layout's order) is checked the same way
for all of them. Every bad cell of a row is named at once (column, value, rule).

Times: a layout says the order of its date fields (``time_formats``, strptime), never guessed per
row. A zone written in the header (``Date(UTC+2)``, ``Date (+01:00)``, ``Filled Time(UTC+02:00)``)
is applied; a layout whose times are the trader's local time (``utc=False``) takes the import's
time zone (``options["timezone"]``, an IANA name; UTC when unset), and a local time that a
daylight-saving change makes ambiguous or skips is refused, not shifted.

Pure: no I/O. Parsers are built once per header (column lookups resolved), then called per row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import QUOTES, Fill, normalize_symbol, split_symbol
from pipeline.journal.formats.cells import (
    _EXCHANGE_SIDES,
    _amount,
    _auto_ms,
    _blank,
    _dt_ms,
    _id,
    _key,
    _number,
    _side,
    _time,
)
from pipeline.messages import Side

PLACEHOLDERS = frozenset({"--", "-", "n/a", "N/A", "null"})
_ZONE = re.compile(r"(.*?)_?\((utc|gmt|utcnull)?\s*([+-]\d{1,2}(?::?\d{2})?)?\)")
_ASSET = re.compile(r"[A-Za-z][A-Za-z0-9]{0,14}")
_OFFSET = re.compile(r"([+-])(\d{1,2})(?::?(\d{2}))?")
_SAMPLE = datetime(2024, 11, 16, 14, 35, 2)
STOCK_SIDES: dict[str, Side] = {
    "buy": "BUY",
    "sell": "SELL",
    "b": "BUY",
    "s": "SELL",
    "bot": "BUY",
    "sld": "SELL",
    "sold": "SELL",
    "bought": "BUY",
    "ss": "SELL",
    "bc": "BUY",
    "short": "SELL",
    "cover": "BUY",
    "sell short": "SELL",
    "buy to cover": "BUY",
    "buy to open": "BUY",
    "sell to close": "SELL",
    "sell to open": "SELL",
    "buy to close": "BUY",
}


def canon(name: str) -> tuple[str, int | None]:
    """Return a column name as compared (``_key`` with a zone folded to ``(utc)``) and the UTC
    offset in minutes its name states, or None: ``Date(UTC+2)`` -> (``date(utc)``, 120)."""
    key = _key(name)
    m = _ZONE.fullmatch(key)
    if not m or not (m[2] or m[3]):
        return key, None
    return m[1] + "(utc)", _offset_minutes(m[3]) if m[3] else 0


def _offset_minutes(text: str) -> int:
    m = _OFFSET.fullmatch(text.strip())
    if not m:
        return 0
    minutes = int(m[2]) * 60 + int(m[3] or 0)
    return -minutes if m[1] == "-" else minutes


def zone_of(name: str | None) -> tzinfo:
    """Return the time zone of an IANA name (``Europe/Berlin``) or ``UTC+02:00``; UTC for None."""
    if not name or name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = re.fullmatch(r"(?:UTC|GMT)?\s*([+-]\d{1,2}(?::?\d{2})?)", name.strip(), re.IGNORECASE)
    if m:
        return timezone(timedelta(minutes=_offset_minutes(m[1])))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: an IANA name like Europe/Berlin, or UTC+02:00") from None


@dataclass(frozen=True)
class Spec:
    """Where a layout keeps each part of a fill (canonical column keys) and how to read it."""

    price: str
    qty: str
    time: str | tuple[str, str]  # one column, or (date column, time-of-day column)
    time_formats: tuple[str, ...] = ()  # strptime forms in the layout's order; () = ISO 8601 or Unix
    utc: bool = True  # the export's times are UTC (else: the import's time zone)
    pair: str | None = None
    pair_order: Literal["base-quote", "quote-base"] = "base-quote"
    base: str | None = None  # a column naming the base asset (when there is no pair column)
    quote: str | None = None  # a column naming the quote asset or the currency
    stock: bool = False  # the symbol has no quote asset: the currency is the row's or the account's
    side: str | None = None
    sides: Mapping[str, Side] = field(default_factory=lambda: dict(_EXCHANGE_SIDES))
    side_pattern: re.Pattern[str] | None = None  # the side word is the first match of this in the cell
    sign: str | None = None  # a signed column whose sign is the side (+ buy, - sell)
    fee: str | None = None
    fee_parts: tuple[str, ...] = ()  # fees charged in parts, summed (commission, SEC, TAF...)
    fee_asset: str | None = None
    fee_default: Literal["quote", "base", "received", "currency"] | None = None
    exchange_id: str | None = None
    only: tuple[str, frozenset[str]] | None = None  # (column, values a fill row has there)
    signed_qty: bool = False  # quantity may be negative (sells): its size is taken


@dataclass(frozen=True)
class Layout:
    """A recognisable export: ``name`` is the format stored with each raw trade."""

    name: str
    label: str
    signature: tuple[str, ...]
    spec: Spec | None = None
    build: Callable[[tuple[str, ...], Mapping[str, str]], Callable[[Mapping[str, object], int], object]] | None = None
    absent: tuple[str, ...] = ()
    kind: Literal["fill", "trade"] = "fill"

    def matches(self, keys: set[str]) -> bool:
        return all(k in keys for k in self.signature) and not any(k in keys for k in self.absent)

    def parser(
        self, header: tuple[str, ...], options: Mapping[str, str]
    ) -> Callable[[Mapping[str, object], int], object]:
        if self.build is not None:
            return self.build(header, options)
        assert self.spec is not None
        return SpecFill(header, self.spec, options)


def header_keys(header: Sequence[str]) -> set[str]:
    """The canonical keys of a header."""
    return {canon(str(h))[0] for h in header}


def _date_rule(formats: tuple[str, ...]) -> str:
    if not formats:
        return "a date like 2024-11-16 14:35:02 or 2024-11-16T14:35:02Z, or Unix seconds or milliseconds"
    return "a date like " + " or ".join(_SAMPLE.strftime(f) for f in formats)


@lru_cache(maxsize=4096)
def _pair_parts(text: str, order: str) -> tuple[str, str | None, str | None] | None:
    parts = re.fullmatch(r"\s*([A-Za-z0-9.]+)\s*[/\-_:]\s*([A-Za-z0-9.]+)(?:[_-][A-Za-z]+)?\s*", text)
    if parts:
        a, b = parts[1].upper(), parts[2].upper()
        base, quote = (b, a) if order == "quote-base" else (a, b)
        return base + quote, base, quote
    symbol = normalize_symbol(text)
    if not re.fullmatch(r"[A-Z0-9]{2,20}", symbol):
        return None
    split = split_symbol(symbol)
    return (symbol, *split) if split else (symbol, None, None)


class SpecFill:
    """Reads one row of a spec'd layout into a ``Fill``; built once per header."""

    def __init__(self, header: tuple[str, ...], spec: Spec, options: Mapping[str, str]) -> None:
        self.spec = spec
        by_key: dict[str, str] = {}
        self.offsets: dict[str, int | None] = {}
        for h in header:
            key, offset = canon(str(h))
            by_key.setdefault(key, h)
            self.offsets[h] = offset
        self._by_key = by_key
        self.zone = zone_of(options.get("timezone"))
        self.account_currency = (options.get("currency") or "USD").upper()
        self.rule = _date_rule(spec.time_formats)

    def col(self, key: str | None) -> str:
        """The header's spelling of a canonical key (the key itself for a column added to rows)."""
        return self._by_key.get(key, key) if key else ""

    # -- times --------------------------------------------------------------------------

    def _zone_for(self, column: str) -> tzinfo:
        offset = self.offsets.get(column)
        if offset is not None:
            return timezone(timedelta(minutes=offset))
        return UTC if self.spec.utc else self.zone

    def _parse_time(self, text: object, zone: tzinfo) -> int | None:
        if not isinstance(text, str):
            return _auto_ms(text)
        s = " ".join(text.replace(".", ". ").split()) if "%b" in "".join(self.spec.time_formats) else text.strip()
        dt: datetime | None = None
        for fmt in self.spec.time_formats:
            try:
                dt = datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
        if not self.spec.time_formats:
            ms = _auto_ms(s)
            if ms is None or re.fullmatch(r"\d+(?:\.\d+)?", s):
                return ms
            try:
                dt = datetime.fromisoformat(s.removesuffix("UTC").strip())
            except ValueError:
                return None
        if dt is None:
            return None
        if dt.tzinfo is not None:
            return _dt_ms(dt)
        return _local_ms(dt, zone)

    def _time(self, bad: list[Violation], get: Callable[[str], object], now_ms: int) -> int | None:
        spec = self.spec
        if isinstance(spec.time, tuple):
            c_date, c_clock = self.col(spec.time[0]), self.col(spec.time[1])
            day, clock = get(c_date), get(c_clock)
            if _blank(day) or _blank(clock):
                bad.append(Violation(c_date if _blank(day) else c_clock, day if _blank(day) else clock, "required"))
                return None
            text: object = f"{str(day).strip()} {str(clock).strip()}"
            column = c_date
        else:
            column = self.col(spec.time)
            text = get(column)
        zone = self._zone_for(column)
        return _time(bad, column, text, now_ms, lambda v: self._parse_time(v, zone), self.rule)

    # -- the row ------------------------------------------------------------------------

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        spec, col = self.spec, self.col

        def get(column: str) -> object:
            v = row.get(column)
            return None if isinstance(v, str) and v.strip() in PLACEHOLDERS else v

        bad: list[Violation] = []
        if spec.only is not None:
            c_only = col(spec.only[0])
            v = get(c_only)
            if not isinstance(v, str) or v.strip().lower() not in spec.only[1]:
                allowed = ", ".join(sorted(spec.only[1]))
                raise BadMessageError([Violation(c_only, v, f"a trade row ({allowed}); this row is not a fill")])
        symbol, base, quote = self._symbol(bad, get)
        side = self._side(bad, get)
        price, _ = _amount(bad, col(spec.price), get(col(spec.price)), (quote,), "> 0", required=True)
        qty_rule = None if (spec.signed_qty or spec.sign == spec.qty) else "> 0"
        qty, _ = _amount(bad, col(spec.qty), get(col(spec.qty)), (base,), qty_rule or "", required=True)
        if qty is not None:
            if qty == 0:
                bad.append(Violation(col(spec.qty), get(col(spec.qty)), "> 0"))
            qty = abs(qty)
        fee, fee_asset = self._fee(bad, get, base, quote)
        time = self._time(bad, get, now_ms)
        if bad:
            raise BadMessageError(bad)
        if fee is not None and fee_asset is None:
            fee_asset = {
                "quote": quote,
                "base": base,
                "received": base if side == "BUY" else quote,
                "currency": quote,
                None: None,
            }[spec.fee_default]
        return Fill(
            symbol,  # type: ignore[arg-type]
            side,  # type: ignore[arg-type]
            price,  # type: ignore[arg-type]
            qty,  # type: ignore[arg-type]
            time,  # type: ignore[arg-type]
            fee,
            fee_asset if fee is not None else None,
            _id(get(col(spec.exchange_id))) if spec.exchange_id else None,
            quote if spec.stock else None,
        )

    def _symbol(self, bad: list[Violation], get: Callable[[str], object]) -> tuple[str | None, str | None, str | None]:
        spec, col = self.spec, self.col
        quote_cell = get(col(spec.quote)) if spec.quote else None
        quote_named = quote_cell.strip().upper() if isinstance(quote_cell, str) and quote_cell.strip() else None
        if spec.stock:
            c_sym = col(spec.pair or "symbol")
            v = get(c_sym)
            sym = v.strip().upper() if isinstance(v, str) else ""
            if not re.fullmatch(r"[A-Z0-9][A-Z0-9./ -]{0,20}", sym):
                bad.append(Violation(c_sym, v, "required" if _blank(v) else "a ticker symbol like AAPL"))
                return None, None, None
            return normalize_symbol(sym), sym, quote_named or self.account_currency
        if spec.pair is None:
            c_base = col(spec.base or "")
            b, q = get(c_base), quote_named
            if not (isinstance(b, str) and _ASSET.fullmatch(b.strip())):
                bad.append(Violation(c_base, b, "required" if _blank(b) else "an asset like BTC"))
                return None, None, None
            if q is None:
                bad.append(Violation(col(spec.quote or ""), quote_cell, "required"))
                return None, None, None
            asset = b.strip().upper()
            return asset + q, asset, q
        c_pair = col(spec.pair)
        v = get(c_pair)
        pair = _pair_parts(v, spec.pair_order) if isinstance(v, str) else None
        if pair is None:
            bad.append(Violation(c_pair, v, "required" if _blank(v) else "a pair like BTCUSDT, BTC/USDT or BTC-USDT"))
            return None, None, None
        symbol, base, quote = pair
        if quote is None and quote_named and symbol.endswith(quote_named) and len(symbol) > len(quote_named):
            base, quote = symbol[: -len(quote_named)], quote_named
        return symbol, base, quote

    def _side(self, bad: list[Violation], get: Callable[[str], object]) -> Side | None:
        spec, col = self.spec, self.col
        if spec.sign is not None:
            c = col(spec.sign)
            x = _number(bad, c, get(c), None, required=True)
            if x is None:
                return None
            if x == 0:
                bad.append(Violation(c, get(c), "not 0: its sign is the side (+ buy, - sell)"))
                return None
            return "BUY" if x > 0 else "SELL"
        c_side = col(spec.side or "")
        v = get(c_side)
        if spec.side_pattern is not None and isinstance(v, str):
            m = spec.side_pattern.search(v)
            v = m[1] if m else v
        return _side(bad, c_side, v, spec.sides, "one of " + ", ".join(sorted({w.upper() for w in spec.sides})))

    def _fee(
        self, bad: list[Violation], get: Callable[[str], object], base: str | None, quote: str | None
    ) -> tuple[float | None, str | None]:
        spec, col = self.spec, self.col
        assets = (base, quote, "BNB")
        if spec.fee_parts:
            total, any_ = 0.0, False
            for part in spec.fee_parts:
                x, _ = _amount(bad, col(part), get(col(part)), assets, "", required=False)
                if x is not None:
                    total, any_ = total + abs(x), True
            fee, suffix = (total if any_ else None), None
        elif spec.fee:
            fee, suffix = _amount(bad, col(spec.fee), get(col(spec.fee)), assets, "", required=False)
            fee = abs(fee) if fee is not None else None
        else:
            return None, None
        named = get(col(spec.fee_asset)) if spec.fee_asset else None
        if isinstance(named, str) and named.strip():
            return fee, named.strip().upper()
        return fee, suffix


def _local_ms(dt: datetime, zone: tzinfo) -> int | None:
    """Return Unix ms of a wall-clock time in ``zone``; None when the zone skips or repeats it."""
    if zone is UTC or isinstance(zone, timezone):
        return _dt_ms(dt.replace(tzinfo=zone))
    first, second = dt.replace(tzinfo=zone, fold=0), dt.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        return None  # repeated (clocks went back) or skipped (clocks went forward): never guessed
    return _dt_ms(first)


def known_quote(symbol: str) -> bool:
    """Say whether a normalized symbol ends in a known quote asset (a crypto pair, not a stock)."""
    return any(symbol.endswith(q) and len(symbol) > len(q) for q in QUOTES)
