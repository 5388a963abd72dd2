"""Every real trade-history file in ``../shared/realdata/trades/`` has an outcome: the right fills,
a refusal that says what the file is, or a mapping form with the best guess filled in.

The files are third-party test data (see PROVENANCE.md there): read from that folder only, never
copied here; without the folder these tests skip. ``OUTCOMES`` lists every file, and a file in the
folder with no outcome fails the suite, so a new sample cannot slip through unjudged.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.journal.fills import Fill, TradeEntry
from pipeline.journal.formats import detect_format, is_known_header, row_parser
from pipeline.journal.importer import ImportFileError, check_file
from pipeline.journal.table import open_table
from storage.db import Database
from tests.realdata import realdata_dir

REALDATA = realdata_dir() / "trades"
NOW = int(datetime(2026, 12, 4, tzinfo=UTC).timestamp() * 1000)
pytestmark = pytest.mark.skipif(not REALDATA.is_dir(), reason=f"no real data at {REALDATA}")


@dataclass(frozen=True)
class Fills:
    format: str
    accepted: int
    rejected: int


@dataclass(frozen=True)
class Refused:
    says: str


@dataclass(frozen=True)
class Mapping:
    guess: dict[str, str]


OUTCOMES: dict[str, Fills | Refused | Mapping] = {
    "BittyTax__example.csv": Refused("a BittyTax transaction-records file (a"),
    "TradeNote__Template.csv": Fills("tradenote", 15, 0),
    "everytrade-plugins__BinanceBeanV3Test.java__customer-rows.csv": Fills("binance-spot", 2, 0),
    "everytrade-plugins__BinanceBeanV3Test.java__czech-header.csv": Fills("binance-spot-cz", 1, 0),
    "everytrade-plugins__BinanceBeanV3Test.java__excel-requoted.csv": Fills("binance-spot", 5, 0),
    "everytrade-plugins__BinanceBeanV3Test.java__thousands.csv": Fills("binance-spot", 2, 0),
    "everytrade-plugins__BybitEuBeanV1Test.java__spot-feecoin.csv": Fills("bybit-spot", 2, 0),
    "everytrade-plugins__binance_v001.csv": Fills("binance-spot-old", 2, 0),
    "everytrade-plugins__binance_v002.csv": Refused("a Binance order history (orders, with"),
    "everytrade-plugins__bitfinex_v001.csv": Fills("bitfinex-trades", 2, 0),
    "everytrade-plugins__bitflyer_v001_M.csv": Mapping(
        {
            "symbol": "Product",
            "side": "Trade Type",
            "price": "Traded Price",
            "quantity": "Amount (Currency 1)",
            "time": "Trade Date",
        }
    ),
    "everytrade-plugins__bitmex_v001_M.csv": Mapping(
        {"symbol": "symbol", "side": "side", "price": "price", "quantity": "lastQty", "time": "transactTime"}
    ),
    "everytrade-plugins__bitstamp_v001.csv": Fills("bitstamp-transactions", 2, 0),
    "everytrade-plugins__bittrex_v001.csv": Mapping(
        {"symbol": "Exchange", "side": "Type", "price": "Price", "quantity": "Quantity", "time": "Closed"}
    ),
    "everytrade-plugins__bittrex_v002.csv": Fills("bittrex-orders-2019", 2, 0),
    "everytrade-plugins__bittrex_v003_M.csv": Fills("bittrex-orders-2019", 2, 0),
    "everytrade-plugins__bybiteu_fund_v001.csv": Refused("a Bybit asset-change history (deposits,"),
    "everytrade-plugins__bybiteu_uta_v001.csv": Refused("a Bybit transaction log: each trade is"),
    "everytrade-plugins__coinbase_v001_M.csv": Fills("coinbase-report", 2, 1),
    "everytrade-plugins__coinbasepro_v001.csv": Fills("coinbase-pro-fills", 2, 0),
    "everytrade-plugins__coinmate_v001.csv": Mapping(
        {"side": "Type", "price": "Price", "quantity": "Amount", "time": "Date"}
    ),
    "everytrade-plugins__coinmate_v001b.csv": Mapping(
        {"side": "Type", "price": "Price", "quantity": "Amount", "time": "Date"}
    ),
    "everytrade-plugins__coinmate_v002.csv": Mapping(
        {"side": "Type", "price": "Price", "quantity": "Amount", "time": "Date"}
    ),
    "everytrade-plugins__coinsquare_v001.csv": Mapping(
        {"side": "action", "price": "price", "quantity": "amount", "time": "date"}
    ),
    "everytrade-plugins__coinsquare_v002.csv": Mapping({"time": "date"}),
    "everytrade-plugins__etrade_v001.csv": Mapping(
        {"symbol": "SYMBOL", "side": "ACTION", "price": "PRICE", "quantity": "QUANTY", "time": "DATE"}
    ),
    "everytrade-plugins__etrade_v002.csv": Mapping(
        {"symbol": "SYMBOL", "side": "ACTION", "quantity": "VOLUME", "time": "DATE"}
    ),
    "everytrade-plugins__etrade_v003_M.csv": Mapping(
        {"symbol": "SYMBOL", "side": "ACTION", "price": "PRICE", "quantity": "QUANTY", "time": "DATE"}
    ),
    "everytrade-plugins__gbytes_v001.csv": Mapping(
        {"side": "Type", "quantity": "Crypto Amount", "time": "Server Time"}
    ),
    "everytrade-plugins__gbytes_v001a.csv": Mapping(
        {"side": "Type", "quantity": "Crypto Amount", "time": "Server Time"}
    ),
    "everytrade-plugins__gbytes_v001b.csv": Mapping(
        {"side": "Type", "quantity": "Crypto Amount", "time": "Server Time"}
    ),
    "everytrade-plugins__gbytes_v002_M.csv": Mapping(
        {"side": "Type", "quantity": "Crypto Amount", "time": "Server Time"}
    ),
    "everytrade-plugins__hitbtc_v001.csv": Fills("hitbtc-trades", 2, 0),
    "everytrade-plugins__hitbtc_v002_M.csv": Fills("hitbtc-trades", 2, 0),
    "everytrade-plugins__huobi_v001.csv": Fills("huobi-trades", 2, 0),
    "everytrade-plugins__localbitcoins_v001.csv": Mapping(
        {"side": "trade_type", "price": "fiat_per_btc", "quantity": "btc_amount", "time": "created_at"}
    ),
    "everytrade-plugins__okex_v001_M.csv": Fills("okex-trades", 2, 0),
    "everytrade-plugins__paxful_v001.csv": Mapping({"side": "type", "price": "rate"}),
    "everytrade-plugins__poloniex_v001.csv": Mapping(
        {"symbol": "Market", "side": "Type", "price": "Price", "quantity": "Amount", "time": "Date"}
    ),
    "everytrade-plugins__poloniex_v002_M.csv": Fills("poloniex-trades", 2, 0),
    "everytrade-plugins__shakepay_v001.csv": Refused("a Shakepay transaction history"),
    "fifo-calc-converter__BybitSpot.csv": Fills("bybit-spot", 2, 0),
    "fifo-calc-converter__BybitSpotPreUnified.csv": Fills("bybit-spot", 2, 0),
    "fifo-calc-converter__PionexCoinTracker.csv": Refused("a CoinTracker-format export (received"),
    "fifo-calc-converter__PionexTrading.csv": Mapping(
        {"symbol": "symbol", "side": "side", "price": "price", "quantity": "amount", "time": "date(UTC+0)"}
    ),
    "fifo-calc__EXCHANGE_DATA.md__bybit-spot-preuta.csv": Fills("bybit-spot", 2, 0),
    "fifo-calc__EXCHANGE_DATA.md__bybit-spot-uta.csv": Fills("bybit-spot", 2, 0),
    "privatefolio__binance.csv": Refused("a Binance transaction history (a"),
    "privatefolio__coinmama.csv": Mapping({"side": "Type", "quantity": "Amount"}),
    "rotki__binance_history.csv": Refused("a Binance transaction history (a"),
    "rotki__bisq_trades.csv": Mapping(
        {"symbol": "Market", "price": "Price", "quantity": "Amount", "time": "Date/Time"}
    ),
    "rotki__bitcoin_tax_spending.csv": Fills("bitcoin-tax", 0, 1),
    "rotki__bitcoin_tax_trades.csv": Fills("bitcoin-tax", 2, 1),
    "rotki__bitmex_wallet_history.csv": Refused("a BitMEX wallet history (realized P&L,"),
    "rotki__bitstamp.csv": Fills("bitstamp-transactions", 1, 2),
    "rotki__bittrex_order_history.csv": Fills("bittrex-orders", 2, 0),
    "rotki__bittrex_order_history_old.csv": Mapping(
        {"symbol": "Exchange", "side": "Type", "price": "Price", "quantity": "Quantity", "time": "Closed"}
    ),
    "rotki__bittrex_order_history_older.csv": Mapping(
        {"symbol": "MARKET", "side": "ORDERTYPE", "quantity": "QUANTITY", "time": "CLOSED"}
    ),
    "rotki__bittrex_tx_history.csv": Refused("a Bittrex deposit and withdrawal"),
    "rotki__bittrex_tx_history_deposits.csv": Refused("a Bittrex deposit history, not"),
    "rotki__bittrex_tx_history_deposits_old.csv": Refused("a Bittrex deposit history, not"),
    "rotki__bittrex_tx_history_withdrawals.csv": Refused("a Bittrex withdrawal history, not"),
    "rotki__bittrex_tx_history_withdrawals_old.csv": Refused("a Bittrex withdrawal history, not"),
    "rotki__blockfi-trades.csv": Refused("a BlockFi trade report (conversions"),
    "rotki__blockfi-transactions.csv": Refused("a BlockFi transaction statement, not"),
    "rotki__blockpit_transactions.csv": Refused("a Blockpit export (a tax tool's"),
    "rotki__coinbasepro.csv": Refused("a Coinbase Pro account statement"),
    "rotki__coinledger_export.csv": Refused("a CoinLedger export (a tax tool's"),
    "rotki__cointracking_custom_dates.csv": Refused("a CoinTracking export (another tool's"),
    "rotki__cointracking_trades_list.csv": Refused("a CoinTracking export (another tool's"),
    "rotki__corrupt_nexo.csv": Refused("a Nexo transaction statement (interest,"),
    "rotki__cryptocom_special_events.csv": Refused("a Crypto.com app transaction log"),
    "rotki__cryptocom_trades_list.csv": Refused("a Crypto.com app transaction log"),
    "rotki__kucoin_order_history.csv": Fills("kucoin-trades", 2, 0),
    "rotki__kucoin_order_history_old.csv": Fills("kucoin-trades-old", 2, 0),
    "rotki__nexo.csv": Refused("a Nexo transaction statement (interest,"),
    "rotki__rotki_generic_events.csv": Refused("rotki generic events (deposits and"),
    "rotki__rotki_generic_trades.csv": Refused("rotki generic trades (spend and receive"),
    "rotki__shapeshift-trade-history.csv": Refused("a ShapeShift swap history (swaps"),
    "rotki__uphold-transaction-history.csv": Refused("an Uphold transaction history"),
    "tradetally__tradovate-paired-trades-sample.csv": Fills("tradovate-paired", 5, 0),
}


@pytest.fixture(scope="module")
def db() -> Iterator[Database]:
    with tempfile.TemporaryDirectory() as folder:
        database = Database(Path(folder) / "desk.db")
        yield database
        database.close()


def test_every_file_in_the_folder_has_an_outcome() -> None:
    assert sorted(p.name for p in REALDATA.iterdir()) == sorted(OUTCOMES)


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_the_file_has_its_outcome(name: str, db: Database) -> None:
    expected = OUTCOMES[name]
    data = (REALDATA / name).read_bytes()
    if isinstance(expected, Fills):
        report = check_file(data, user_id="realdata", db=db, now_ms=NOW)
        assert (report.format, report.accepted, report.rejected_rows) == (
            expected.format,
            expected.accepted,
            expected.rejected,
        ), report.rejected
        return
    with pytest.raises(ImportFileError) as info:
        check_file(data, user_id="realdata", db=db, now_ms=NOW)
    if isinstance(expected, Refused):
        assert str(info.value).startswith("this file is " + expected.says), str(info.value)
        assert not info.value.needs_mapping
    else:
        assert info.value.needs_mapping, str(info.value)
        guessed = {k: v for k, v in info.value.guess.items() if k in expected.guess}
        assert guessed == expected.guess


def read(name: str, options: dict[str, str] | None = None) -> list[Any]:
    table = open_table((REALDATA / name).read_bytes(), is_known_header)
    fmt = detect_format(table.header)
    assert fmt is not None
    parse = row_parser(fmt, table.header, options)
    width = len(table.header)
    return [parse(dict(zip(table.header, r.cells + [""] * (width - len(r.cells)))), NOW) for r in table.rows()]


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_binance_customer_rows_with_a_digit_ticker_and_a_bnb_fee() -> None:
    assert read("everytrade-plugins__BinanceBeanV3Test.java__customer-rows.csv") == [
        Fill("SOLUSDT", "BUY", 129.95, 0.48, utc("2022-01-20 23:17:49"), 0.00010548, "BNB"),
        Fill("1INCHUSDT", "BUY", 1.969, 5.1, utc("2022-01-10 14:36:20"), 0.00001853, "BNB"),
    ]


def test_spreadsheet_requoted_binance_rows_read_as_the_clean_row() -> None:
    fills = read("everytrade-plugins__BinanceBeanV3Test.java__excel-requoted.csv")
    assert len(fills) == 5
    assert set(fills) == {Fill("ADABTC", "BUY", 1500.000005, 2500.0, utc("2022-02-18 13:24:05"), 2500.0, "ADA")}


def test_czech_binance_header_with_two_digit_years() -> None:
    assert read("everytrade-plugins__BinanceBeanV3Test.java__czech-header.csv") == [
        Fill("BTCEUR", "BUY", 50000.0, 0.05, utc("2024-03-08 10:15:42"), 0.002, "BNB")
    ]


def test_bybit_pre_unified_amounts_with_an_asset_after_a_space() -> None:
    assert read("fifo-calc-converter__BybitSpotPreUnified.csv") == [
        Fill("RENDERUSDT", "BUY", 6.441, 16.35, utc("2024-09-30 10:30:32"), 0.01635, "RENDER", "83347712"),
        Fill("RENDERUSDT", "SELL", 6.21, 7.9, utc("2024-09-25 03:41:22"), 0.049059, "USDT", "50850304"),
    ]


def test_bybit_newest_layout_takes_the_fee_from_execfeev2_and_feecoin() -> None:
    sell, buy = read("everytrade-plugins__BybitEuBeanV1Test.java__spot-feecoin.csv")
    assert (sell.side, sell.price, sell.quantity, sell.fee, sell.fee_asset) == (
        "SELL",
        53842.9,
        3e-05,
        0.0040382175,
        "EUR",
    )
    assert (buy.side, buy.price, buy.quantity, buy.fee, buy.fee_asset) == ("BUY", 53873.6, 7e-05, 1.75e-07, "BTC")
    assert sell.time == buy.time == utc("2026-06-05 08:22:00")


def test_okex_bom_in_every_cell_signed_amounts_and_negative_fees() -> None:
    buy, sell = read("everytrade-plugins__okex_v001_M.csv")
    assert (buy.symbol, buy.side, buy.quantity, buy.fee, buy.fee_asset) == (
        "LTCUSDT",
        "BUY",
        2.273693,
        0.0034105395,
        "LTC",
    )
    assert (sell.side, sell.quantity, sell.fee, sell.fee_asset) == ("SELL", 2.291153, 0.10514101117, "USDT")


def test_a_zone_in_the_header_moves_times_to_utc() -> None:
    first, _ = read("everytrade-plugins__hitbtc_v002_M.csv")
    assert first.time == utc("2019-11-26 11:32:40")  # "Date (+01:00)" 12:32:40


def test_tradenote_executions_take_the_import_time_zone_and_sum_their_fees() -> None:
    fills = read("TradeNote__Template.csv", {"timezone": "America/New_York"})
    first = fills[0]
    assert (first.symbol, first.side, first.quantity, first.price, first.currency) == (
        "RBLX",
        "SELL",
        50.0,
        49.88,
        "USD",
    )
    assert first.time == utc("2022-08-08 13:47:59")  # 09:47:59 in New York (EDT)
    assert first.fee == pytest.approx(0.07) and first.fee_asset == "USD"


def test_tradovate_paired_trades_are_whole_trades_with_the_brokers_pnl() -> None:
    trades = read("tradetally__tradovate-paired-trades-sample.csv")
    assert all(isinstance(t, TradeEntry) for t in trades)
    short = trades[3]
    assert isinstance(short, TradeEntry)
    assert (short.symbol, short.side, short.entry_price, short.exit_price, short.quantity, short.pnl) == (
        "MNQM6",
        "SELL",
        25051.0,
        25064.0,
        2.0,
        -52.0,
    )


def test_bittrex_pairs_written_quote_first_are_turned_around() -> None:
    sell, _ = read("everytrade-plugins__bittrex_v002.csv")
    assert (sell.symbol, sell.side, sell.price, sell.fee_asset) == ("BTCUSD", "SELL", 9471.466, "USD")
