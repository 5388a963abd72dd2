"""Rows that parse but cannot be true are refused by name, wherever they come from (import, form,
trades API, exchange API payloads), and real rows still pass."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from pipeline.errors import BadMessageError
from pipeline.journal.fills import Fill, TradeEntry
from pipeline.journal.formats import parse_row
from pipeline.journal.payloads import PARSERS
from pipeline.journal.plausible import symbol_problem
from pipeline.journal.sources import submit_entry
from pipeline.messages import RawTrade
from pipeline.stages.normalizer import parse_raw

NOW = int(datetime(2025, 1, 10, 12, 0, tzinfo=UTC).timestamp() * 1000)
BINANCE = ["Date(UTC)", "Pair", "Side", "Price", "Executed", "Amount", "Fee"]
TRADE = {"symbol": "BTCUSDT", "side": "BUY", "entry_price": "62000", "quantity": "0.01", "entry_time": "2024-11-16"}


def binance(**over: str) -> dict[str, str]:
    row = dict(zip(BINANCE, ["2024-11-16 14:35:02", "BTCUSDT", "BUY", "62000", "0.01BTC", "620USDT", "0.00001BTC"]))
    return {**row, **over}


def refused(fmt: str, row: Mapping[str, object]) -> dict[str, str]:
    with pytest.raises(BadMessageError) as info:
        parse_row(fmt, row, now_ms=NOW)
    return {v.field: v.rule for v in info.value.violations}


def test_a_good_binance_row_passes() -> None:
    fill = parse_row("binance-spot", binance(), now_ms=NOW)
    assert isinstance(fill, Fill)
    assert (fill.symbol, fill.quantity, fill.price) == ("BTCUSDT", 0.01, 62000.0)


@pytest.mark.parametrize(
    "over, column, words",
    [
        ({"Executed": "1e309BTC"}, "Executed", "a number"),  # was stored as 1.0 of "E309BTC"
        ({"Executed": "0.01ETH"}, "Executed", "BTC, the pair's base"),
        ({"Amount": "999999USDT"}, "Amount", "price x quantity (620)"),
        ({"Date(UTC)": "1970-01-02 00:00:00"}, "Date(UTC)", "from 2009-01-03"),
        ({"Pair": "NaN"}, "Pair", "not a date, a number or a word"),
        ({"Price": "1e300", "Amount": ""}, "Price", "at most 1e+12"),
    ],
)
def test_implausible_binance_rows_are_refused_by_column(over: dict[str, str], column: str, words: str) -> None:
    rules = refused("binance-spot", binance(**over))
    assert column in rules and words in rules[column], rules


def test_an_overflowing_trade_is_refused_at_the_api_before_it_poisons_the_journal() -> None:
    class Never:
        def produce(self, *a: object, **k: object) -> None:
            raise AssertionError("nothing is published")

    with pytest.raises(BadMessageError) as info:
        submit_entry(Never(), "alice", {**TRADE, "entry_price": 1e308, "quantity": 10})  # type: ignore[arg-type]
    fields = {v.field for v in info.value.violations}
    assert "entry_price" in fields and "quantity" in fields  # the price bound and the value bound
    with pytest.raises(BadMessageError) as info:
        parse_row("manual", {**TRADE, "exit_price": "63000", "exit_time": "2024-11-17", "pnl": "1e20"}, now_ms=NOW)
    assert {v.field for v in info.value.violations} == {"pnl"}


@pytest.mark.parametrize("symbol", ["2024-03-01", "Infinity", "SELL", "NaN", "12345", "BTC-PERP-2024-FUT", "-"])
def test_symbols_that_are_dates_numbers_or_words_are_refused(symbol: str) -> None:
    assert "symbol" in refused("manual", {**TRADE, "symbol": symbol})


@pytest.mark.parametrize(
    "symbol", ["BTCUSDT", "eth/btc", "1INCHUSDT", "AAPL", "BRK.B", "GE", "SOL-USDC", "XBTUSD", "MNQM6", "ESZ24"]
)
def test_real_pairs_and_stock_tickers_pass(symbol: str) -> None:
    assert symbol_problem(parse_row("manual", {**TRADE, "symbol": symbol}, now_ms=NOW).symbol) is None


def test_times_in_the_future_and_before_the_market_existed_are_refused() -> None:
    assert "entry_time" in refused("manual", {**TRADE, "entry_time": "2026-01-01"})
    assert "entry_time" in refused("manual", {**TRADE, "entry_time": "2005-06-01"})  # crypto before Bitcoin
    stock = parse_row("manual", {**TRADE, "symbol": "IBM", "entry_time": "2005-06-01"}, now_ms=NOW)
    assert isinstance(stock, TradeEntry)
    assert stock.entry_time < NOW


def test_exchange_api_payloads_keep_the_same_rules() -> None:
    good = {"symbol": "BTCUSDT", "price": "62000", "qty": "0.01", "time": NOW - 1000, "isBuyer": True, "id": 7}
    assert PARSERS["binance-api"](good).symbol == "BTCUSDT"
    for bad, field in (({"symbol": "NAN"}, "symbol"), ({"time": 1000}, "time"), ({"qty": "1e300"}, "qty")):
        with pytest.raises(BadMessageError) as info:
            PARSERS["binance-api"]({**good, **bad})
        assert field in {v.field for v in info.value.violations}


def test_the_normalizer_refuses_an_unknown_format_by_name() -> None:
    raw = RawTrade(raw_id="r", user_id="u", source="x", format="nope", received_at=NOW, payload=dict(TRADE))
    with pytest.raises(BadMessageError) as info:
        parse_raw(raw)
    assert info.value.violations[0].field == "format" and "one of" in info.value.violations[0].rule
