"""Exchange export layouts: Binance and Bybit spot trade history, one execution per row -> ``Fill``."""

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
    _key,
    _number,
    _side,
    _symbol,
    _time,
)
from pipeline.journal.plausible import check_amount, check_asset

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

BINANCE_KEYS = {_key(c) for c in BINANCE_COLUMNS}
BYBIT_KEYS = {_key(c) for c in ("Spot Pairs", "Direction", "Filled Price", "Filled Quantity", "Timestamp (UTC)")}


def _columns(header: Sequence[str], wanted: Sequence[str]) -> dict[str, str]:
    """Return canonical column -> the header's own spelling (the canonical name when absent)."""
    actual = {_key(h): h for h in header}
    return {w: actual.get(_key(w), w) for w in wanted}


def _exchange_fill(
    bad: list[Violation], get: Callable[[str], object], c_pair: str, c_side: str, c_price: str, c_qty: str, c_value: str
) -> tuple[Any, str | None, str | None, Any, Any, Any]:
    """Read what every exchange export has: pair, side, price, quantity, and the quote value
    (checked as a number only: the fill is price x quantity)."""
    pair = _symbol(bad, c_pair, get(c_pair))
    base, quote = (pair[1], pair[2]) if pair else (None, None)
    side = _side(bad, c_side, get(c_side), _EXCHANGE_SIDES, "one of BUY, SELL")
    price = _number(bad, c_price, get(c_price), "> 0", required=True)
    qty, asset = _amount(bad, c_qty, get(c_qty), (base,), "> 0", required=True)
    check_asset(bad, c_qty, get(c_qty), asset, base)
    value, _ = _amount(bad, c_value, get(c_value), (quote,), ">= 0", required=False)
    check_amount(bad, c_value, get(c_value), value, price, qty)
    return pair, base, quote, side, price, qty


class _Binance:
    """Binance spot trade history, with or without the ``Fee Coin`` column."""

    def __init__(self, header: Sequence[str]) -> None:
        cols = _columns(header, (*BINANCE_COLUMNS, "Fee Coin"))
        self.cols = tuple(cols.values())
        names = ("time", "symbol", "side", "price", "quantity", "amount", "fee", "fee_asset")
        self.field_columns = dict(zip(names, self.cols))

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
        self.cols = tuple(_columns(header, BYBIT_COLUMNS).values())
        names = ("symbol", "", "side", "amount", "price", "quantity", "fee", "exchange_id", "", "time")
        self.field_columns = dict(zip(names, self.cols))

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
