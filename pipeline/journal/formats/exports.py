"""Exchange export layouts: Binance and Bybit spot trade history, one execution per row -> ``Fill``.

Binance: ``Date(UTC),Pair,Side,Price,Executed,Amount,Fee`` with or without ``Fee Coin``, with
``Quantity`` for ``Executed``, and with the zone in the date's name (``Date(UTC+2)``: the times are
that zone's, and are moved to UTC). Bybit: the unified-account layout, the pre-unified one (a
``Filled Time (Local Time)`` column and amounts like ``6.441 USDT``), and the newest one whose
``Fees`` is ``--`` with the fee in ``ExecFeeV2`` and its asset in ``feeCoin``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import Fill
from pipeline.journal.formats.cells import (
    _EXCHANGE_SIDES,
    BINANCE_DATE_RULE,
    BYBIT_DATE_RULE,
    _amount,
    _bybit_ms,
    _id,
    _iso_ms,
    _side,
    _symbol,
    _time,
)
from pipeline.journal.formats.layout import canon

BINANCE_COLUMNS = ("Date(UTC)", "Pair", "Side", "Price", "Executed", "Amount", "Fee")
BYBIT_COLUMNS = (
    "Spot Pairs",
    "Order Type",
    "Direction",
    "Filled Value",
    "Filled Price",
    "Filled Quantity",
    "Fees",
    "Transaction ID",
    "Order No.",
    "Timestamp (UTC)",
)

BINANCE_KEYS = {canon(c)[0] for c in BINANCE_COLUMNS}
BINANCE_QUANTITY_KEYS = (BINANCE_KEYS - {"executed"}) | {"quantity"}
BYBIT_KEYS = {canon(c)[0] for c in ("Spot Pairs", "Direction", "Filled Price", "Filled Quantity", "Timestamp (UTC)")}
_PLACEHOLDERS = frozenset({"--", "-"})


def _columns(header: Sequence[str], wanted: Sequence[str]) -> dict[str, str]:
    """Return canonical column -> the header's own spelling (the canonical name when absent)."""
    actual = {canon(h)[0]: h for h in header}
    return {w: actual.get(canon(w)[0], w) for w in wanted}


def _offset_ms(header: Sequence[str], column: str) -> int:
    """The UTC offset the header writes into a time column's name (``Date(UTC+2)``), in ms."""
    for h in header:
        if h == column:
            return (canon(h)[1] or 0) * 60_000
    return 0


def _cell(get: Callable[[str], object], column: str) -> object:
    v = get(column)
    return None if isinstance(v, str) and v.strip() in _PLACEHOLDERS else v


def _exchange_fill(
    bad: list[Violation], get: Callable[[str], object], c_pair: str, c_side: str, c_price: str, c_qty: str, c_value: str
) -> tuple[Any, str | None, str | None, Any, Any, Any]:
    """Read what every exchange export has: pair, side, price, quantity, and the quote value
    (checked as a number only: the fill is price x quantity)."""
    pair = _symbol(bad, c_pair, get(c_pair))
    base, quote = (pair[1], pair[2]) if pair else (None, None)
    side = _side(bad, c_side, get(c_side), _EXCHANGE_SIDES, "one of BUY, SELL")
    price, _ = _amount(bad, c_price, get(c_price), (quote,), "> 0", required=True)
    qty, _ = _amount(bad, c_qty, get(c_qty), (base,), "> 0", required=True)
    _amount(bad, c_value, get(c_value), (quote,), ">= 0", required=False)
    return pair, base, quote, side, price, qty


class _Binance:
    """Binance spot trade history, with or without the ``Fee Coin`` column."""

    def __init__(self, header: Sequence[str]) -> None:
        keys = {canon(h)[0] for h in header}
        executed = "Quantity" if "quantity" in keys and "executed" not in keys else "Executed"
        wanted = [executed if c == "Executed" else c for c in BINANCE_COLUMNS]
        cols = _columns(header, (*wanted, "Fee Coin"))
        self.cols = tuple(cols.values())
        self.offset = _offset_ms(header, self.cols[0])

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        c_date, c_pair, c_side, c_price, c_exec, c_amount, c_fee, c_coin = self.cols
        get = row.get
        bad: list[Violation] = []
        pair, base, quote, side, price, qty = _exchange_fill(bad, get, c_pair, c_side, c_price, c_exec, c_amount)
        fee, fee_asset = _amount(bad, c_fee, get(c_fee), (base, quote, "BNB"), ">= 0", required=False)
        coin = get(c_coin)
        if isinstance(coin, str) and coin.strip():
            fee_asset = coin.strip().upper()
        offset = self.offset
        time = _time(bad, c_date, get(c_date), now_ms, lambda v: _shifted(_iso_ms(v), offset), BINANCE_DATE_RULE)
        if bad:
            raise BadMessageError(bad)
        return Fill(
            pair[0],
            side,
            price,
            qty,
            time,  # type: ignore[arg-type]
            fee,
            fee_asset if fee is not None else None,
        )


class _Bybit:
    """Bybit spot order history; fees are charged in the asset received unless the cell says."""

    def __init__(self, header: Sequence[str]) -> None:
        self.cols = tuple(_columns(header, (*BYBIT_COLUMNS, "ExecFeeV2", "feeCoin")).values())
        self.offset = _offset_ms(header, self.cols[9])

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        c_pair, _, c_side, c_value, c_price, c_qty, c_fee, c_txid, _, c_time, c_fee2, c_coin = self.cols

        def get(column: str) -> object:
            return _cell(row.get, column)

        bad: list[Violation] = []
        pair, base, quote, side, price, qty = _exchange_fill(bad, get, c_pair, c_side, c_price, c_qty, c_value)
        fee, fee_asset = _amount(bad, c_fee, get(c_fee), (base, quote), ">= 0", required=False)
        if fee is None and get(c_fee2) is not None:  # the newest layout: Fees is "--"
            fee, fee_asset = _amount(bad, c_fee2, get(c_fee2), (base, quote), ">= 0", required=False)
            coin = get(c_coin)
            if isinstance(coin, str) and coin.strip():
                fee_asset = coin.strip().upper()
        offset = self.offset
        time = _time(bad, c_time, get(c_time), now_ms, lambda v: _shifted(_bybit_ms(v), offset), BYBIT_DATE_RULE)
        if bad:
            raise BadMessageError(bad)
        if fee is not None and fee_asset is None:
            fee_asset = base if side == "BUY" else quote
        return Fill(
            pair[0],
            side,
            price,
            qty,
            time,  # type: ignore[arg-type]
            fee,
            fee_asset if fee is not None else None,
            _id(get(c_txid)),
        )


def _shifted(ms: int | None, offset_ms: int) -> int | None:
    """A time read in a zone ``offset_ms`` ahead of UTC, in UTC."""
    return None if ms is None else ms - offset_ms
