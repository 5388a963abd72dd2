"""Other journals' files, so traders can move their history here: TradeNote's execution template
(a DAS Trader style export: ``T/D`` and ``Exec Time`` in separate columns, sides ``B/S/SS/BC``,
fees in seven columns), Tradervue's generic import (``Date,Time,Symbol,Quantity,Price,Side`` plus
optional fee columns) and Tradovate's paired-trades export (one whole round trip per row, with
its P/L as the broker computed it, contract multiplier included). Times are local: they take the
import's time zone. Symbols are stocks or futures: the currency is the row's or the account's.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import TradeEntry
from pipeline.journal.formats.cells import _blank, _number
from pipeline.journal.formats.layout import STOCK_SIDES, Layout, Spec, SpecFill

TRADENOTE = Spec(
    pair="symbol",
    stock=True,
    quote="currency",
    side="side",
    sides=STOCK_SIDES,
    price="price",
    qty="qty",
    fee_parts=("comm", "sec", "taf", "nscc", "nasdaq", "ecn_remove", "ecn_add"),
    fee_default="currency",
    time=("t/d", "exec_time"),
    time_formats=("%m/%d/%Y %H:%M:%S", "%m/%d/%y %H:%M:%S"),
    utc=False,
)
TRADERVUE = Spec(
    pair="symbol",
    stock=True,
    quote="currency",
    side="side",
    sides=STOCK_SIDES,
    price="price",
    qty="quantity",
    signed_qty=True,
    fee_parts=("commission", "transfee", "ecnfee"),
    fee_default="currency",
    time=("date", "time"),
    time_formats=("%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%m/%d/%y %H:%M:%S"),
    utc=False,
)
_TRADOVATE_TIMES = ("%m/%d/%Y %H:%M:%S",)


class _TradovatePaired(SpecFill):
    """One round trip per row: entry is the earlier of the bought and sold timestamps."""

    def __init__(self, header: tuple[str, ...], options: Mapping[str, str]) -> None:
        spec = Spec(price="buy_price", qty="paired_qty", time="bought_timestamp", time_formats=_TRADOVATE_TIMES)
        super().__init__(header, spec, options)

    def __call__(self, row: Mapping[str, object], now_ms: int) -> TradeEntry:  # type: ignore[override]
        col, get = self.col, row.get
        bad: list[Violation] = []
        contract = get(col("contract"))
        if _blank(contract):
            bad.append(Violation(col("contract"), contract, "required"))
        buy = _number(bad, col("buy_price"), get(col("buy_price")), "> 0", required=True)
        sell = _number(bad, col("sell_price"), get(col("sell_price")), "> 0", required=True)
        qty = _number(bad, col("paired_qty"), get(col("paired_qty")), "> 0", required=True)
        pnl = _number(bad, col("p/l"), get(col("p/l")), None, required=False)
        times = []
        for name in ("bought_timestamp", "sold_timestamp"):
            times.append(self._one_time(bad, col(name), get(col(name)), now_ms))
        if bad:
            raise BadMessageError(bad)
        bought, sold = times
        long = bought <= sold  # type: ignore[operator]
        return TradeEntry(
            symbol=str(contract).strip().upper(),
            side="BUY" if long else "SELL",
            entry_price=buy if long else sell,  # type: ignore[arg-type]
            quantity=qty,  # type: ignore[arg-type]
            entry_time=bought if long else sold,  # type: ignore[arg-type]
            exit_price=sell if long else buy,
            exit_time=sold if long else bought,
            pnl=pnl,
            external_id=_pair_id(row, col),
        )

    def _one_time(self, bad: list[Violation], column: str, value: object, now_ms: int) -> int | None:
        from pipeline.journal.formats.cells import _time

        zone = self._zone_for(column)
        return _time(bad, column, value, now_ms, lambda v: self._parse_time(v, zone), self.rule)


def _pair_id(row: Mapping[str, object], col: object) -> str | None:
    get = row.get
    parts = [get(col("buy_fill_id")), get(col("sell_fill_id"))]  # type: ignore[operator]
    if all(isinstance(p, str) and p.strip() for p in parts):
        return "tradovate:" + ":".join(str(p).strip() for p in parts)
    return None


LAYOUTS = (
    Layout(
        "tradenote",
        "TradeNote template (DAS Trader executions)",
        ("account", "t/d", "currency", "side", "symbol", "qty", "price", "exec_time"),
        TRADENOTE,
    ),
    Layout(
        "tradervue",
        "Tradervue generic import",
        ("date", "time", "symbol", "quantity", "price", "side"),
        TRADERVUE,
    ),
    Layout(
        "tradovate-paired",
        "Tradovate paired trades",
        ("contract", "paired_qty", "buy_price", "sell_price", "bought_timestamp", "sold_timestamp", "p/l"),
        build=lambda header, options: _TradovatePaired(header, options),
        kind="trade",
    ),
)
