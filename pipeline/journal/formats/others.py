"""Smaller crypto exchanges whose exports traders still hold: HitBTC, Huobi, Poloniex, Bitstamp,
Bittrex (the 2023 order history, after its ``Name:``/``UserID:`` preamble) and Pionex.

Each is a table of facts (see ``layout.Spec``). Row kinds that are not fills (Bitstamp deposits,
Poloniex margin rows) are refused by name, one row at a time."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.journal.fills import Fill
from pipeline.journal.formats.layout import Layout, Spec, SpecFill

_SUFFIX = re.compile(r"\s*[-+]?[\d.,]+\s+([A-Za-z][A-Za-z0-9]*)\s*")
_PAIR = "\x00pair"  # the pair Bitstamp writes as two suffixes, added to each row under this key

HITBTC = Spec(
    pair="instrument",
    side="side",
    price="price",
    qty="quantity",
    fee="fee",
    fee_default="quote",
    time="date(utc)",
    exchange_id="trade_id",
)
HUOBI = Spec(pair="pair", side="side", price="price", qty="amount", fee="fee", time="time", utc=False)
POLONIEX = Spec(
    pair="market",
    side="type",
    price="price",
    qty="amount",
    fee="fee_total",
    fee_asset="fee_currency",
    time="date",
    only=("category", frozenset({"exchange"})),
)
BITSTAMP = Spec(
    pair=_PAIR,
    side="sub_type",
    price="rate",
    qty="amount",
    fee="fee",
    time="datetime",
    time_formats=("%b. %d, %Y, %I:%M %p", "%b %d, %Y, %I:%M %p"),
    only=("type", frozenset({"market", "limit"})),
)
BITTREX = Spec(
    base="base",
    quote="quote",
    side="transaction",
    sides={"bought": "BUY", "sold": "SELL", "buy": "BUY", "sell": "SELL"},
    price="price",
    qty="quantity_(base)",
    fee="fees_(quote)",
    fee_default="quote",
    time="time(utc)",
    exchange_id="txid",
)
BITTREX_OLD = Spec(
    pair="exchange",
    pair_order="quote-base",
    side="ordertype",
    side_pattern=re.compile(r"(BUY|SELL)$", re.IGNORECASE),
    price="priceperunit",
    qty="quantity",
    fee="commission",
    fee_default="quote",
    time="closed",
    time_formats=("%m/%d/%Y %I:%M:%S %p",),
    exchange_id="uuid",
)
BITCOIN_TAX = Spec(
    base="symbol",
    quote="currency",
    side="action",
    price="price",
    qty="volume",
    fee="fee",
    fee_asset="feecurrency",
    time="date",
    time_formats=("%Y-%m-%d %H:%M:%S %z",),
    only=("action", frozenset({"buy", "sell"})),
)


class _Bitstamp(SpecFill):
    """Bitstamp names the base in ``Amount`` (``1.0 ETH``) and the quote in ``Rate`` (``2214 EUR``)."""

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        amount, rate = row.get(self.col("amount")), row.get(self.col("rate"))
        base = _SUFFIX.fullmatch(amount) if isinstance(amount, str) else None
        quote = _SUFFIX.fullmatch(rate) if isinstance(rate, str) else None
        pair = f"{base[1]}/{quote[1]}" if base and quote else ""
        return super().__call__({**row, _PAIR: pair}, now_ms)


LAYOUTS = (
    Layout(
        "hitbtc-trades",
        "HitBTC trades",
        ("date(utc)", "instrument", "trade_id", "side", "quantity", "price", "fee"),
        HITBTC,
    ),
    Layout("huobi-trades", "Huobi trade history", ("time", "type", "pair", "side", "price", "amount", "fee"), HUOBI),
    Layout(
        "poloniex-trades",
        "Poloniex trade history",
        ("date", "market", "category", "type", "price", "amount", "fee_total", "fee_currency"),
        POLONIEX,
    ),
    Layout(
        "bitstamp-transactions",
        "Bitstamp transactions",
        ("type", "datetime", "account", "amount", "value", "rate", "fee", "sub_type"),
        build=lambda header, options: _Bitstamp(header, BITSTAMP, options),
    ),
    Layout(
        "bittrex-orders",
        "Bittrex order history",
        ("txid", "time(utc)", "transaction", "market", "base", "quote", "price", "quantity_(base)"),
        BITTREX,
    ),
    Layout(
        "bittrex-orders-2019",
        "Bittrex order history (2019-2020)",
        ("uuid", "exchange", "timestamp", "ordertype", "quantity", "commission", "priceperunit", "closed"),
        BITTREX_OLD,
    ),
    Layout(
        "bitcoin-tax",
        "bitcoin.tax trades",
        ("date", "action", "symbol", "volume", "price", "currency", "fee", "feecurrency"),
        BITCOIN_TAX,
    ),
)
