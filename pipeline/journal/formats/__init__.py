"""Read one row of a trade file or of the entry form into a ``Fill`` or a ``TradeEntry``.

Formats: Binance and Bybit spot exports (one execution per row -> ``Fill``; ``exports``), the
generic template and the entry form (one whole trade per row -> ``TradeEntry``), and a trader's own
column mapping (``custom``; both in ``mapped``), over the cell readers of ``cells``. Every bad field
of a row is named at once in one ``BadMessageError``: the column as the trader sees it, the value as
received and the rule in words. Pure: no I/O, no pandas.

``row_parser`` builds a parser for one header once (column lookups resolved, cached), so a file of
a million rows pays for them once; ``parse_row`` is the one-row convenience over it. Text cells
(notes, setup, emotion, tags) are kept exactly as given, formulas included; ``escape_cell`` makes
them safe when written back to a CSV.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Literal

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import Fill, TradeEntry
from pipeline.journal.formats.cells import _key
from pipeline.journal.formats.exports import BINANCE_COLUMNS, BINANCE_KEYS, BYBIT_COLUMNS, BYBIT_KEYS, _Binance, _Bybit
from pipeline.journal.formats.mapped import (
    FILL_FIELDS,
    FILL_REQUIRED,
    MAPPING_OPTIONS,
    TRADE_FIELDS,
    TRADE_REQUIRED,
    _custom,
    _generic,
)
from pipeline.journal.plausible import check_entry, check_fill

Format = Literal["binance-spot", "bybit-spot", "generic", "manual", "custom"]
FORMATS: tuple[str, ...] = ("binance-spot", "bybit-spot", "generic", "manual", "custom")
RowParser = Callable[[Mapping[str, object], int], "Fill | TradeEntry"]


__all__ = [
    "BINANCE_COLUMNS",
    "BYBIT_COLUMNS",
    "FILL_FIELDS",
    "FILL_REQUIRED",
    "FORMATS",
    "MAPPING_OPTIONS",
    "TRADE_FIELDS",
    "TRADE_REQUIRED",
    "Format",
    "RowParser",
    "detect_format",
    "escape_cell",
    "parse_row",
    "row_parser",
]


def detect_format(header: list[str]) -> str | None:
    """Return the format of a file from its header row, or None when a column mapping is needed."""
    keys = {_key(str(h)) for h in header}
    if keys >= BINANCE_KEYS:
        return "binance-spot"
    if keys >= BYBIT_KEYS:
        return "bybit-spot"
    if set(TRADE_REQUIRED) <= keys:
        return "generic"
    return None


class _Plausible:
    """A format's parser followed by the plausibility rules every row keeps (``journal.plausible``).

    Columns are named as the parser names them: its ``field_columns``, or a mapped parser's ``cols``."""

    def __init__(self, parse: RowParser) -> None:
        self.parse = parse
        cols = getattr(parse, "field_columns", None) or getattr(parse, "cols", None)
        self.cols: dict[str, str] = {k: v for k, v in cols.items() if v} if isinstance(cols, dict) else {}

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill | TradeEntry:
        item = self.parse(row, now_ms)
        bad = check_fill(item, now_ms, self.cols) if type(item) is Fill else check_entry(item, now_ms, self.cols)  # type: ignore[arg-type]
        if bad:
            raise BadMessageError(bad)
        return item


@lru_cache(maxsize=256)
def _cached(fmt: str, header: tuple[str, ...], mapping: tuple[tuple[str, str], ...] | None) -> RowParser:
    return _Plausible(_parser(fmt, header, mapping))


def _parser(fmt: str, header: tuple[str, ...], mapping: tuple[tuple[str, str], ...] | None) -> RowParser:
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
    raise BadMessageError([Violation("format", fmt, f"one of {', '.join(FORMATS)}")])


def row_parser(fmt: str, header: Sequence[str], mapping: Mapping[str, str] | None = None) -> RowParser:
    """Return ``parse(row, now_ms)`` for rows under ``header``; cached per (format, header, mapping).

    Raises ``BadMessageError`` for a custom mapping that misses required targets or names columns
    the header does not have.
    """
    frozen = None
    if mapping is not None:
        frozen = tuple(sorted((str(k), "" if v is None else str(v)) for k, v in mapping.items()))
    return _cached(fmt, tuple(header), frozen)


def parse_row(
    fmt: str, row: Mapping[str, object], mapping: Mapping[str, str] | None = None, *, now_ms: int
) -> Fill | TradeEntry:
    """Parse one row (column -> cell) of ``fmt``; raise ``BadMessageError`` naming every bad field."""
    return row_parser(fmt, tuple(row), mapping)(row, now_ms)


_FORMULA = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")  # and their full-width forms, which spreadsheets also read


def escape_cell(value: str) -> str:
    """Return ``value`` safe for a CSV export (OWASP CSV injection): a ``'`` before a cell whose first
    character is a formula mark (``= + - @`` or their full-width forms) or any whitespace or control
    character (tab, CR, LF, a space before ``=1+1``: spreadsheets skip those and read the formula)."""
    if not value:
        return value
    first = value[0]
    if first in _FORMULA or first.isspace() or first < " " or first == "\x7f":
        return "'" + value
    return value
