"""Derivatives accounts' money that is not a fill, read into ``Payment`` records of their own.

* Binance USDⓈ-M futures transaction history (``Date(UTC),type,Amount,Asset,Symbol,Transaction
  ID``): ``FUNDING_FEE`` rows are funding payments, ``REALIZED_PNL`` rows the P&L Binance booked;
  commissions, transfers and the other types are refused by name, row by row.
* Bybit derivatives trade history: ``TRADE`` rows are fills (``bybit_more``); ``SETTLEMENT`` rows
  are funding payments, their signed ``Change`` the money the wallet received (+) or paid (-).

A payment of 0 is refused (nothing was paid). Times are UTC as both exports state.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import Fill, Payment, PaymentKind, normalize_symbol
from pipeline.journal.formats.bybit_more import DERIVATIVES
from pipeline.journal.formats.cells import _blank, _id, _number, _time
from pipeline.journal.formats.layout import Layout, SpecFill, canon

_BINANCE_KINDS: dict[str, PaymentKind] = {"funding_fee": "funding", "realized_pnl": "realized_pnl"}


def _columns(header: tuple[str, ...]) -> dict[str, str]:
    return {canon(h)[0]: h for h in header}


def _payment(
    bad: list[Violation],
    kind: PaymentKind,
    cols: tuple[str, str, str, str],
    row: Mapping[str, object],
    now_ms: int,
    exchange_id: str | None,
) -> Payment:
    c_symbol, c_amount, c_asset, c_time = cols
    symbol, asset = row.get(c_symbol), row.get(c_asset)
    amount = _number(bad, c_amount, row.get(c_amount), None, required=True)
    if amount == 0:
        bad.append(Violation(c_amount, row.get(c_amount), "not 0: a payment moves money"))
    for column, value in ((c_symbol, symbol), (c_asset, asset)):
        if _blank(value):
            bad.append(Violation(column, value, "required"))
    when = _time(bad, c_time, row.get(c_time), now_ms, _iso, "a date like 2024-11-16 14:35:02 (UTC)")
    if bad:
        raise BadMessageError(bad)
    return Payment(
        kind,
        normalize_symbol(str(symbol)),
        amount,  # type: ignore[arg-type]
        str(asset).strip().upper(),
        when,  # type: ignore[arg-type]
        exchange_id,
    )


def _iso(value: object) -> int | None:
    from pipeline.journal.formats.cells import _iso_ms

    return _iso_ms(value)


class _BinanceIncome:
    def __init__(self, header: tuple[str, ...], options: Mapping[str, str]) -> None:
        c = _columns(header)
        self.c_type = c.get("type", "type")
        self.cols = (c.get("symbol", "Symbol"), c.get("amount", "Amount"), c.get("asset", "Asset"), c["date(utc)"])
        self.c_id = c.get("transaction_id", "Transaction ID")

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Payment:
        kind = row.get(self.c_type)
        found = _BINANCE_KINDS.get(kind.strip().lower()) if isinstance(kind, str) else None
        if found is None:
            rule = "FUNDING_FEE or REALIZED_PNL (a payment of its own); this row is not one"
            raise BadMessageError([Violation(self.c_type, kind, rule)])
        return _payment([], found, self.cols, row, now_ms, _id(row.get(self.c_id)))


class _BybitDerivatives:
    def __init__(self, header: tuple[str, ...], options: Mapping[str, str]) -> None:
        self.fills = SpecFill(header, DERIVATIVES, options)
        c = _columns(header)
        self.c_type = c.get("type", "Type")
        self.cols = (c.get("contract", "Contract"), c.get("change", "Change"), c.get("currency", "Currency"), c["time"])
        self.c_id = c.get("trade_id", "Trade ID")

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill | Payment:
        kind = row.get(self.c_type)
        if isinstance(kind, str) and kind.strip().lower() == "settlement":
            return _payment([], "funding", self.cols, row, now_ms, _id(row.get(self.c_id)))
        return self.fills(row, now_ms)


LAYOUTS = (
    Layout(
        "binance-futures-income",
        "Binance futures transaction history (funding and realized P&L)",
        ("date(utc)", "type", "amount", "asset", "symbol", "transaction_id"),
        build=lambda header, options: _BinanceIncome(header, options),
    ),
    Layout(
        "bybit-derivatives",
        "Bybit derivatives trade history (fills and funding)",
        ("time", "currency", "contract", "type", "direction", "quantity", "filled_price", "fee_paid", "trade_id"),
        build=lambda header, options: _BybitDerivatives(header, options),
    ),
)
