"""Plausibility of parsed rows: what a well-formed row can still get wrong, checked for every source.

A row can parse cleanly and still be impossible: a price times a quantity that overflows
(``1e308`` x 10), a trade in 1970 or next year, a symbol that is a date, a number or a column word
(``2024-03-01``, ``Infinity``, ``NaN``, ``SELL``), an ``Executed`` asset that is not the pair's base,
an ``Amount`` that is not price x quantity, a note of megabytes. ``check_fill`` and ``check_entry``
return a ``Violation`` per broken rule (the column as the trader sees it, the value, the rule);
``pipeline.journal.formats.row_parser`` runs them after every format's parser, and the exchange API
payloads run them in ``pipeline.journal.payloads``, so the importer's check, the normalizer's parse,
the entry form and the trades API all refuse the same rows, and a new format gets them for free.
``check_asset`` and ``check_amount`` are for parsers that read an asset suffix or a quote value.

The bounds (a value of at most 10^13 in the quote currency, prices up to 10^12, the eras) are far
outside any real trade and well inside what sums of many trades can hold without overflowing, so
analytics over a user's trades stay finite. Pure; a few float operations per row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from pipeline.errors import Violation
from pipeline.journal.fills import Fill, TradeEntry, split_symbol

# The first Bitcoin block (2009-01-03): no crypto pair traded before it.
CRYPTO_ERA_MS = 1_230_940_800_000
# Stocks: from 1980-01-01 (older trades are not what a journal holds).
STOCK_ERA_MS = 315_532_800_000
FUTURE_SLACK_MS = 5 * 60_000
MAX_PRICE = 1e12
MAX_QUANTITY = 1e15
MAX_VALUE = 1e13
MAX_NOTES = 20_000
MAX_LABEL = 200
MAX_TAGS = 50
MAX_TAG = 64
MAX_ID = 128
AMOUNT_TOLERANCE = 0.01  # relative: exports round the quote value, never by a whole percent

SYMBOL_RULE = (
    "a pair with a known quote currency (BTCUSDT, ETH/BTC) or a stock ticker of 1-5 letters (AAPL, BRK.B) "
    "or a futures contract (MNQM6), not a date, a number or a word such as BUY, SELL or NaN"
)
# Words that turn up in a symbol column when a file is misread; never a symbol.
RESERVED = frozenset(
    {
        "BUY",
        "SELL",
        "LONG",
        "SHORT",
        "NAN",
        "INF",
        "INFINITY",
        "NULL",
        "NONE",
        "NA",
        "TRUE",
        "FALSE",
        "TOTAL",
        "SUM",
        "DATE",
        "TIME",
        "PAIR",
        "SIDE",
        "PRICE",
        "FEE",
        "FEES",
        "QTY",
    }
)
_STOCK = re.compile(r"[A-Z]{1,5}[A-Z]?")  # AAPL; BRK.B and BF-B arrive as BRKB, BFB
_LETTER = re.compile(r"[A-Z]")
# a futures contract: a root of 1-4 letters, the month code and the year (MNQM6, ESZ24, CLF2025)
_FUTURE = re.compile(r"[A-Z]{1,4}[FGHJKMNQUVXZ](?:\d|\d{2}|\d{4})")


def symbol_problem(symbol: str) -> str | None:
    """Return the rule a normalized symbol breaks, or None when it is a plausible pair or stock."""
    if symbol in RESERVED:
        return SYMBOL_RULE
    pair = split_symbol(symbol)
    if pair is not None and _LETTER.search(pair[0]) and pair[0] not in RESERVED:
        return None
    if pair is None and _STOCK.fullmatch(symbol) and len(symbol) <= 6:
        return None
    if pair is None and _FUTURE.fullmatch(symbol):
        return None
    return SYMBOL_RULE


def era_start(symbol: str) -> int:
    """The earliest plausible trade time of ``symbol`` (Unix ms)."""
    return CRYPTO_ERA_MS if split_symbol(symbol) is not None else STOCK_ERA_MS


def _date(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


class _Checks:
    """Collects violations, naming each field by its column (``cols``) when the parser gave one."""

    def __init__(self, cols: Mapping[str, str] | None) -> None:
        self.cols = cols or {}
        self.bad: list[Violation] = []

    def col(self, field: str) -> str:
        return self.cols.get(field) or field

    def add(self, field: str, value: object, rule: str) -> None:
        self.bad.append(Violation(self.col(field), value, rule))

    def number(self, field: str, value: float | None, limit: float, *, signed: bool = False) -> None:
        if value is None:
            return
        if not math.isfinite(value) or (abs(value) if signed else value) > limit:
            self.add(field, value, f"a finite number of at most {'±' if signed else ''}{limit:g}")

    def value(self, field: str, price: float | None, quantity: float) -> None:
        if price is None:
            return
        product = price * quantity
        if not math.isfinite(product) or product > MAX_VALUE:
            self.add(field, quantity, f"a quantity whose value (price x quantity) is at most {MAX_VALUE:g}")

    def time(self, field: str, ms: int | None, symbol: str, now_ms: int) -> None:
        if ms is None:
            return
        start = era_start(symbol)
        if ms < start:
            self.add(field, ms, f"a time from {_date(start)} on (the era of the market it names)")
        elif ms > now_ms + FUTURE_SLACK_MS:
            self.add(field, ms, "a time not in the future")

    def text(self, field: str, value: str | None, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(field, f"{value[:40]}... ({len(value)} characters)", f"at most {limit} characters")

    def symbol(self, symbol: str) -> None:
        rule = symbol_problem(symbol)
        if rule:
            self.add("symbol", symbol, rule)


def check_fill(fill: Fill, now_ms: int, cols: Mapping[str, str] | None = None) -> list[Violation]:
    """Return what makes a parsed fill implausible (empty when nothing does)."""
    c = _Checks(cols)
    c.symbol(fill.symbol)
    c.number("price", fill.price, MAX_PRICE)
    c.number("quantity", fill.quantity, MAX_QUANTITY)
    c.value("quantity", fill.price, fill.quantity)
    c.number("fee", fill.fee, MAX_VALUE)
    c.time("time", fill.time, fill.symbol, now_ms)
    c.text("exchange_id", fill.exchange_id, MAX_ID)
    return c.bad


def check_entry(entry: TradeEntry, now_ms: int, cols: Mapping[str, str] | None = None) -> list[Violation]:
    """Return what makes a parsed whole trade implausible (empty when nothing does)."""
    c = _Checks(cols)
    c.symbol(entry.symbol)
    for field in ("entry_price", "exit_price", "stop_loss"):
        c.number(field, getattr(entry, field), MAX_PRICE)
    c.number("quantity", entry.quantity, MAX_QUANTITY)
    c.value("quantity", entry.entry_price, entry.quantity)
    c.value("quantity", entry.exit_price, entry.quantity)
    c.number("pnl", entry.pnl, MAX_VALUE, signed=True)
    c.number("fees", entry.fees, MAX_VALUE)
    c.time("entry_time", entry.entry_time, entry.symbol, now_ms)
    c.time("exit_time", entry.exit_time, entry.symbol, now_ms)
    c.text("notes", entry.notes, MAX_NOTES)
    c.text("setup", entry.setup, MAX_LABEL)
    c.text("emotion", entry.emotion, MAX_LABEL)
    c.text("trade_id", entry.external_id, MAX_ID)
    if len(entry.tags) > MAX_TAGS:
        c.add("tags", f"{len(entry.tags)} tags", f"at most {MAX_TAGS} tags")
    for tag in entry.tags:
        c.text("tags", tag, MAX_TAG)
    # a violation per rule, not per offending cell of a repeated rule
    seen: set[tuple[str, str]] = set()
    return [v for v in c.bad if (v.field, v.rule) not in seen and not seen.add((v.field, v.rule))]  # type: ignore[func-returns-value]


def check_asset(bad: list[Violation], col: str, value: object, asset: str | None, base: str | None) -> None:
    """An executed quantity's asset suffix (``0.01ETH``) must be the pair's base."""
    if asset is not None and base is not None and asset.upper() != base.upper():
        bad.append(Violation(col, value, f"a quantity in {base}, the pair's base asset"))


def check_amount(
    bad: list[Violation], col: str, value: object, amount: float | None, price: float | None, quantity: float | None
) -> None:
    """A quote value (``Amount``, ``Filled Value``) must be price x quantity within rounding."""
    if amount is None or price is None or quantity is None:
        return
    expected = price * quantity
    if not math.isfinite(expected) or abs(amount - expected) > max(AMOUNT_TOLERANCE * expected, 1e-8):
        bad.append(Violation(col, value, f"price x quantity ({expected:.10g}) within 1 %"))
