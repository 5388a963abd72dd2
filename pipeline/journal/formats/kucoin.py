"""KuCoin trade history: the API-like export (``tradeCreatedAt,...,feeCurrency``, with or without
``orderId``), the old one (``Time,Pair,Side,FilledPrice,FilledPriceCoin,...``, dates
``2019/05/11 10:27:17``), and the newest (``Filled Time(UTC+02:00)``: the zone is in its name)."""

from __future__ import annotations

from pipeline.journal.formats.layout import Layout, Spec

API = Spec(
    pair="symbol",
    side="side",
    price="price",
    qty="size",
    fee="fee",
    fee_asset="feecurrency",
    time="tradecreatedat",
    exchange_id="tradeid",
)
OLD = Spec(
    pair="pair",
    side="side",
    price="filledprice",
    qty="amount",
    fee="fee",
    fee_asset="feecoin",
    time="time",
    time_formats=("%Y/%m/%d %H:%M:%S",),
)
NEWEST = Spec(
    pair="symbol",
    side="side",
    price="avg._filled_price",
    qty="filled_amount",
    fee="fee",
    fee_asset="fee_currency",
    time="filled_time(utc)",
    exchange_id="order_id",
)

LAYOUTS = (
    Layout("kucoin-trades", "KuCoin trade history", ("tradecreatedat", "symbol", "side", "price", "size", "fee"), API),
    Layout(
        "kucoin-trades-old",
        "KuCoin trade history (old layout)",
        ("time", "pair", "side", "filledprice", "filledpricecoin", "amount", "amountcoin", "fee", "feecoin"),
        OLD,
    ),
    Layout(
        "kucoin-orders",
        "KuCoin spot orders (filled)",
        ("symbol", "side", "avg._filled_price", "filled_amount", "filled_time(utc)", "fee"),
        NEWEST,
    ),
)
