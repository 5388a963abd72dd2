"""Read one row of a trade file or of the entry form into a ``Fill`` or a ``TradeEntry``.

Formats: Binance and Bybit spot exports (one execution per row -> ``Fill``; ``exports``), the other
exchanges, brokers and journals described as data (``layout.Layout``, one module per venue:
``binance_more``, ``bybit_more``, ``kraken``, ``coinbase``, ``okx``, ``kucoin``, ``mexc``,
``bitfinex``, ``others``, ``brokers``, ``journals``; derivatives funding and booked P&L as
``Payment`` records in ``payments``), the generic template and the entry form (one
whole trade per row -> ``TradeEntry``), and a trader's own column mapping (``custom``; both in
``mapped``), over the cell readers of ``cells``. Files of another kind (statements, deposits,
funding logs) are named by ``kinds``; ``guess`` fills a mapping form in. Every bad field
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
from pipeline.journal.fills import Fill, Payment, TradeEntry
from pipeline.journal.formats import (
    binance_more,
    bitfinex,
    brokers,
    bybit_more,
    coinbase,
    journals,
    kraken,
    kucoin,
    mexc,
    okx,
    others,
    payments,
)
from pipeline.journal.formats.exports import (
    BINANCE_COLUMNS,
    BINANCE_KEYS,
    BINANCE_QUANTITY_KEYS,
    BYBIT_COLUMNS,
    BYBIT_KEYS,
    _Binance,
    _Bybit,
)
from pipeline.journal.formats.guess import guess_mapping
from pipeline.journal.formats.kinds import what_kind
from pipeline.journal.formats.layout import Layout, header_keys, zone_of
from pipeline.journal.formats.mapped import (
    FILL_FIELDS,
    FILL_REQUIRED,
    MAPPING_OPTIONS,
    TRADE_FIELDS,
    TRADE_REQUIRED,
    _custom,
    _generic,
)

Format = Literal["binance-spot", "bybit-spot", "generic", "manual", "custom"]
# Every layout described as data, most specific first (a header is matched against them in order).
LAYOUTS: tuple[Layout, ...] = (
    *binance_more.LAYOUTS,
    *bybit_more.LAYOUTS,
    *payments.LAYOUTS,
    *kraken.LAYOUTS,
    *coinbase.LAYOUTS,
    *okx.LAYOUTS,
    *kucoin.LAYOUTS,
    *mexc.LAYOUTS,
    *bitfinex.LAYOUTS,
    *others.LAYOUTS,
    *brokers.LAYOUTS,
    *journals.LAYOUTS,
)
_BY_NAME = {layout.name: layout for layout in LAYOUTS}
LABELS: dict[str, str] = {
    "binance-spot": "Binance spot trade history",
    "bybit-spot": "Bybit spot trade history",
    "generic": "the generic template",
    "manual": "the entry form",
    "custom": "a column mapping",
    **{layout.name: layout.label for layout in LAYOUTS},
}
FORMATS: tuple[str, ...] = ("binance-spot", "bybit-spot", *_BY_NAME, "generic", "manual", "custom")
# Options that change how a known layout is read, carried with each raw trade (``RawTrade.mapping``).
READ_OPTIONS = ("timezone", "currency")
RowParser = Callable[[Mapping[str, object], int], "Fill | TradeEntry | Payment"]


__all__ = [
    "BINANCE_COLUMNS",
    "BYBIT_COLUMNS",
    "FILL_FIELDS",
    "FILL_REQUIRED",
    "FORMATS",
    "LABELS",
    "LAYOUTS",
    "MAPPING_OPTIONS",
    "READ_OPTIONS",
    "TRADE_FIELDS",
    "TRADE_REQUIRED",
    "Format",
    "RowParser",
    "detect_format",
    "escape_cell",
    "guess_mapping",
    "is_known_header",
    "parse_row",
    "row_parser",
    "row_unit",
    "what_kind",
    "zone_of",
]


def detect_format(header: list[str]) -> str | None:
    """Return the format of a file from its header row, or None when a column mapping is needed."""
    keys = header_keys(header)
    if "realized_profit" not in keys and (keys >= BINANCE_KEYS or keys >= BINANCE_QUANTITY_KEYS):
        return "binance-spot"
    if keys >= BYBIT_KEYS:
        return "bybit-spot"
    for layout in LAYOUTS:
        if layout.matches(keys):
            return layout.name
    if set(TRADE_REQUIRED) <= keys:
        return "generic"
    return None


def is_known_header(header: list[str]) -> bool:
    """Say whether a line is the header of a known layout or of a known file of another kind."""
    return detect_format(header) is not None or what_kind(header_keys(header)) is not None


def row_unit(fmt: str) -> Literal["fill", "trade"]:
    """What a row of ``fmt`` is: one execution, or one whole trade."""
    layout = _BY_NAME.get(fmt)
    if layout is not None:
        return layout.kind
    return "trade" if fmt in ("generic", "manual") else "fill"


@lru_cache(maxsize=256)
def _cached(fmt: str, header: tuple[str, ...], mapping: tuple[tuple[str, str], ...] | None) -> RowParser:
    options = {k: v for k, v in (mapping or ()) if k in READ_OPTIONS}
    if fmt != "custom" and mapping is not None and len(options) == len(mapping):
        mapping = None  # reading options of a known layout, not a column mapping
    if "timezone" in options:
        try:
            zone_of(options["timezone"])
        except ValueError as exc:
            raise BadMessageError([Violation("timezone", options["timezone"], str(exc))]) from None
    if mapping is not None or fmt == "custom":
        if mapping is None:
            raise BadMessageError([Violation("mapping", None, "a column mapping for format custom")])
        return _custom(header, dict(mapping))
    if fmt in _BY_NAME:
        return _BY_NAME[fmt].parser(header, options)  # type: ignore[return-value]
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


def parse_row(
    fmt: str, row: Mapping[str, object], mapping: Mapping[str, str] | None = None, *, now_ms: int
) -> Fill | TradeEntry | Payment:
    """Parse one row (column -> cell) of ``fmt``; raise ``BadMessageError`` naming every bad field."""
    return row_parser(fmt, tuple(row), mapping)(row, now_ms)


def escape_cell(value: str) -> str:
    """Return ``value`` safe for a CSV export: a ``'`` before a leading ``= + - @``, tab or CR (OWASP)."""
    return "'" + value if value and value[0] in "=+-@\t\r" else value
