"""Binance exports beyond the standard spot trade history (``exports._Binance``): the Czech-UI
header (``Čas,Pár,Strana,...`` with two-digit years, ``24-03-08``), the old export before about
2021 (``Date(UTC),Market,Type,Price,Amount,Total,Fee,Fee Coin``: bare numbers, the side in
``Type``) and the USDⓈ-M futures trade history (``Date(UTC),Symbol,Side,Price,Quantity,Amount,
Fee,Realized Profit``). Times are UTC unless the date column names another zone."""

from __future__ import annotations

from pipeline.journal.formats.layout import Layout, Spec

CZECH = Spec(
    pair="pár",
    side="strana",
    price="cena",
    qty="provedeno",
    fee="poplatek",
    time="čas",
    time_formats=("%y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"),
)
OLD = Spec(
    pair="market",
    side="type",
    price="price",
    qty="amount",
    fee="fee",
    fee_asset="fee_coin",
    time="date(utc)",
)
FUTURES = Spec(
    pair="symbol",
    side="side",
    price="price",
    qty="quantity",
    fee="fee",
    fee_default="quote",
    time="date(utc)",
)

LAYOUTS = (
    Layout(
        "binance-spot-cz",
        "Binance spot trade history (Czech)",
        ("čas", "pár", "strana", "cena", "provedeno", "částka", "poplatek"),
        CZECH,
    ),
    Layout(
        "binance-spot-old",
        "Binance trade history (before 2021)",
        ("date(utc)", "market", "type", "price", "amount", "total", "fee", "fee_coin"),
        OLD,
    ),
    Layout(
        "binance-futures",
        "Binance USDⓈ-M futures trade history",
        ("date(utc)", "symbol", "side", "price", "quantity", "fee", "realized_profit"),
        FUTURES,
    ),
)
