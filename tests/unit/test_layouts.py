"""Every layout described as data, each with rows written here in its layout (not copied from any
export), and the rules they share: zones in header names, the import time zone, signed amounts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.errors import BadMessageError
from pipeline.journal.fills import Fill, Payment, TradeEntry
from pipeline.journal.formats import FORMATS, LAYOUTS, detect_format, guess_mapping, row_parser, what_kind
from pipeline.journal.formats.layout import canon

NOW = int(datetime(2026, 12, 4, tzinfo=UTC).timestamp() * 1000)


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def parse(header: str, line: str, options: dict[str, str] | None = None, sep: str = ",") -> Fill | TradeEntry | Payment:
    cols, cells = header.split(sep), line.split(sep)
    fmt = detect_format(cols)
    assert fmt is not None, header
    return row_parser(fmt, cols, options)(dict(zip(cols, cells)), NOW)


# (format, header, row, the fill it is) -- one own row per layout
CASES = [
    (
        "binance-spot",
        "Date(UTC+2),Pair,Side,Price,Quantity,Amount,Fee",
        "2025-03-01 12:00:00,ETHUSDT,SELL,2200.5,0.5ETH,1100.25USDT,1.10025USDT",
        Fill("ETHUSDT", "SELL", 2200.5, 0.5, utc("2025-03-01 10:00:00"), 1.10025, "USDT"),
    ),
    (
        "binance-spot-old",
        "Date(UTC),Market,Type,Price,Amount,Total,Fee,Fee Coin",
        "2020-05-01 08:00:00,ETHBTC,SELL,0.025,2,0.05,0.00005,BTC",
        Fill("ETHBTC", "SELL", 0.025, 2.0, utc("2020-05-01 08:00:00"), 0.00005, "BTC"),
    ),
    (
        "binance-futures",
        "Date(UTC),Symbol,Side,Price,Quantity,Amount,Fee,Realized Profit",
        "2025-02-02 09:30:00,BTCUSDT,BUY,97000,0.002,194,0.0776USDT,0",
        Fill("BTCUSDT", "BUY", 97000.0, 0.002, utc("2025-02-02 09:30:00"), 0.0776, "USDT"),
    ),
    (
        "bybit-spot",
        "Uid,Spot Pairs,Order Type,Direction,Filled Value,Filled Price,Filled Quantity,Fees,Transaction ID,"
        "Order No.,Timestamp (UTC+0)",
        "1001,SOLUSDT,LIMIT,BUY,150,150,1,0.001,T-1,O-1,2024-12-09 19:48:23",
        Fill("SOLUSDT", "BUY", 150.0, 1.0, utc("2024-12-09 19:48:23"), 0.001, "SOL", "T-1"),
    ),
    (
        "bybit-derivatives",
        "Time,Currency,Contract,Type,Direction,Quantity,Position,Filled Price,Funding,Fee Paid,Cash Flow,Change,"
        "Wallet Balance,Fee Rate,Trade ID,Order ID",
        "2025-01-05 10:00:00,USDT,BTCUSDT,TRADE,SELL,-0.01,0,95000,0,0.5225,0,-0.5225,1000,0.00055,tr-9,or-9",
        Fill("BTCUSDT", "SELL", 95000.0, 0.01, utc("2025-01-05 10:00:00"), 0.5225, "USDT", "tr-9"),
    ),
    (
        "kraken-trades",
        "txid,ordertxid,pair,time,type,ordertype,price,cost,fee,vol,margin,misc,ledgers",
        "TX1,OX1,XXBTZEUR,2021-03-04 05:06:07.1234,buy,limit,40000.0,400.0,0.64,0.01,0.0,,L1",
        Fill("BTCEUR", "BUY", 40000.0, 0.01, utc("2021-03-04 05:06:07.123400"), 0.64, "EUR", "TX1"),
    ),
    (
        "coinbase-pro-fills",
        "portfolio,trade id,product,side,created at,size,size unit,price,fee,total,price/fee/total unit",
        "default,77,ETH-USD,BUY,2021-06-01T10:00:00.500Z,1.5,ETH,2500,3.75,-3753.75,USD",
        Fill("ETHUSD", "BUY", 2500.0, 1.5, utc("2021-06-01 10:00:00.500"), 3.75, "USD", "77"),
    ),
    (
        "coinbase-report",
        "Timestamp,Transaction Type,Asset,Quantity Transacted,GBP Spot Price at Transaction,GBP Subtotal,"
        "GBP Total (inclusive of fees),GBP Fees,Notes",
        "2021-01-02T03:04:05Z,Sell,ETH,0.5,600,300,295,5,Sold",
        Fill("ETHGBP", "SELL", 600.0, 0.5, utc("2021-01-02 03:04:05"), 5.0, "GBP"),
    ),
    (
        "okx-trades",
        "id,Order id,Time,Trade Type,Symbol,Action,Amount,Trading Unit,Filled Price,Filled Price Unit,PnL,Fee,"
        "Fee Unit,Position Change,Position Balance,Position Unit,Balance Change,Balance,Balance Unit",
        "9,O9,2024-04-05 06:07:08,Spot,OKB-USDT,buy,10,OKB,50,USDT,0,-0.01,OKB,0,0,OKB,10,10,OKB",
        Fill("OKBUSDT", "BUY", 50.0, 10.0, utc("2024-04-05 06:07:08"), 0.01, "OKB", "9"),
    ),
    (
        "kucoin-trades",
        "tradeCreatedAt,orderId,symbol,side,price,size,funds,fee,liquidity,feeCurrency,orderType",
        "2023-07-08 09:10:11,O1,KCS-USDT,sell,5.5,10,55,0.055,taker,USDT,market",
        Fill("KCSUSDT", "SELL", 5.5, 10.0, utc("2023-07-08 09:10:11"), 0.055, "USDT"),
    ),
    (
        "kucoin-orders",
        "UID,Account Type,Order ID,Symbol,Side,Order Type,Avg. Filled Price,Filled Amount,Filled Volume,"
        "Filled Volume (USDT),Filled Time(UTC+02:00),Fee,Maker/Taker,Fee Currency",
        "1,mainAccount,O7,BTC-USDT,BUY,LIMIT,60000,0.01,600,600,2024-05-06 12:00:00,0.6,TAKER,USDT",
        Fill("BTCUSDT", "BUY", 60000.0, 0.01, utc("2024-05-06 10:00:00"), 0.6, "USDT", "O7"),
    ),
    (
        "mexc-trades",
        "Pairs,Time,Side,Filled Price,Executed Amount,Total,Fee,Role",
        "MX_USDT,2024-01-02 03:04:05,SELL,3.2,100,320,0.32USDT,Taker",
        Fill("MXUSDT", "SELL", 3.2, 100.0, utc("2024-01-02 03:04:05"), 0.32, "USDT"),
    ),
    (
        "bitfinex-trades",
        "#,PAIR,AMOUNT,PRICE,FEE,FEE PERC,FEE CURRENCY,DATE,ORDER ID",
        "5,ETH/USD,-0.5,1800,-1.8,0.2%,USD,13-02-23 08:00:00,99",
        Fill("ETHUSD", "SELL", 1800.0, 0.5, utc("2023-02-13 08:00:00"), 1.8, "USD"),
    ),
    (
        "hitbtc-trades",
        "Date (UTC),Instrument,Trade ID,Order ID,Side,Quantity,Price,Volume,Fee,Rebate,Total",
        "2019-01-02 03:04:05,ETH/BTC,T5,O5,sell,1,0.03,0.03,0.00003,0,0.02997",
        Fill("ETHBTC", "SELL", 0.03, 1.0, utc("2019-01-02 03:04:05"), 0.00003, "BTC", "T5"),
    ),
    (
        "huobi-trades",
        "Time,Type,Pair,Side,Price,Amount,Total,Fee",
        "2021-04-05 06:07:08,Exchange,HT/USDT,Buy,10,5,50,0.01HT",
        Fill("HTUSDT", "BUY", 10.0, 5.0, utc("2021-04-05 06:07:08"), 0.01, "HT"),
    ),
    (
        "poloniex-trades",
        "Date,Market,Category,Type,Price,Amount,Total,Fee,Order Number,Base Total Less Fee,Quote Total Less Fee,"
        "Fee Currency,Fee Total",
        "2021-02-03 04:05:06,ETH/USDT,Exchange,Sell,1500,2,3000,0.1%,7,2997,-2,USDT,3",
        Fill("ETHUSDT", "SELL", 1500.0, 2.0, utc("2021-02-03 04:05:06"), 3.0, "USDT"),
    ),
    (
        "bittrex-orders",
        "TXID,Time (UTC),Transaction,Order Type,Market,Base,Quote,Price,Quantity (Base),Fees (Quote),"
        "Total (Quote),Approx Value (USD),Time In Force,Notes",
        "tx-1,2020-01-02T03:04:05,Sold,Limit,ETH/BTC,ETH,BTC,0.02,3,0.00015,0.05985,,GTC,",
        Fill("ETHBTC", "SELL", 0.02, 3.0, utc("2020-01-02 03:04:05"), 0.00015, "BTC", "tx-1"),
    ),
    (
        "bitcoin-tax",
        "Date,Action,Symbol,Account,Volume,Price,Currency,Fee,FeeCurrency,Total",
        "2019-01-02 03:04:05 +0100,SELL,LTC,Kraken,3,40,EUR,0.1,EUR,119.9",
        Fill("LTCEUR", "SELL", 40.0, 3.0, utc("2019-01-02 02:04:05"), 0.1, "EUR"),
    ),
    (
        "ibkr-flex",
        "ClientAccountID,CurrencyPrimary,Symbol,DateTime,Quantity,TradePrice,IBCommission,IBCommissionCurrency,"
        "Buy/Sell,TradeID",
        "U1,USD,MSFT,20250106;093001,-20,420.5,-1.05,USD,SELL,555",
        Fill("MSFT", "SELL", 420.5, 20.0, utc("2025-01-06 09:30:01"), 1.05, "USD", "555", "USD"),
    ),
    (
        "schwab",
        "Date,Action,Symbol,Description,Quantity,Price,Fees & Comm,Amount",
        "01/06/2025 as of 01/03/2025,Sell Short,TSLA,TESLA INC,5,$410.00,$0.65,$2049.35",
        Fill("TSLA", "SELL", 410.0, 5.0, utc("2025-01-06 00:00:00"), 0.65, "USD", None, "USD"),
    ),
    (
        "fidelity",
        "Run Date,Account,Account Number,Action,Symbol,Description,Type,Price ($),Quantity,Commission ($),"
        "Fees ($),Amount ($),Settlement Date",
        "01/07/2025,Brokerage,X1,YOU SOLD NVIDIA CORP (NVDA) (Cash),NVDA,NVIDIA CORP,Cash,140.25,-10,0,0.02,"
        "1402.48,01/08/2025",
        Fill("NVDA", "SELL", 140.25, 10.0, utc("2025-01-07 00:00:00"), 0.02, "USD", None, "USD"),
    ),
    (
        "thinkorswim",
        "DATE,TIME,TYPE,REF #,DESCRIPTION,Misc Fees,Commissions & Fees,Amount,Balance",
        "1/8/25,10:15:00,TRD,R1,BOT +15 AMD @120.40,0.01,0.00,-1806.01,5000",
        Fill("AMD", "BUY", 120.4, 15.0, utc("2025-01-08 10:15:00"), 0.01, "USD", "R1", "USD"),
    ),
    (
        "webull-orders",
        "Name,Symbol,Side,Status,Filled,Total Qty,Price,Avg Price,Time-in-Force,Placed Time,Filled Time",
        "Apple,AAPL,Buy,Filled,3,3,@190.00,190.05,DAY,01/09/2025 09:31:00 EST,01/09/2025 09:31:02 EST",
        Fill("AAPL", "BUY", 190.05, 3.0, utc("2025-01-09 14:31:02"), None, None, None, "USD"),
    ),
    (
        "tradenote",
        "Account,T/D,S/D,Currency,Type,Side,Symbol,Qty,Price,Exec Time,Comm,SEC,TAF,NSCC,Nasdaq,ECN Remove,"
        "ECN Add,Gross Proceeds,Net Proceeds,Clr Broker,Liq,Note",
        "A1,01/10/2025,01/13/2025,USD,stock,BC,GME,10,25.5,10:00:01,0.5,0,0.01,0,0,0,0,-255,-255.51,X,,",
        Fill("GME", "BUY", 25.5, 10.0, utc("2025-01-10 10:00:01"), 0.51, "USD", None, "USD"),
    ),
    (
        "tradervue",
        "Date,Time,Symbol,Quantity,Price,Side,Commission,TransFee,ECNFee",
        "01/13/2025,15:59:58,SPY,100,590.1,Short,1,0.02,0.3",
        Fill("SPY", "SELL", 590.1, 100.0, utc("2025-01-13 15:59:58"), 1.32, "USD", None, "USD"),
    ),
]


@pytest.mark.parametrize(("fmt", "header", "row", "fill"), CASES, ids=[c[0] for c in CASES])
def test_each_layout_reads_its_own_row(fmt: str, header: str, row: str, fill: Fill) -> None:
    assert detect_format(header.split(",")) == fmt
    got = parse(header, row)
    assert isinstance(got, Fill)
    assert got.fee == (pytest.approx(fill.fee) if fill.fee is not None else None)
    for attr in ("symbol", "side", "price", "quantity", "time", "fee_asset", "exchange_id", "currency"):
        assert getattr(got, attr) == getattr(fill, attr), attr


def test_at_least_25_exchange_broker_and_journal_formats() -> None:
    named = [f for f in FORMATS if f not in ("generic", "manual", "custom")]
    assert len(named) >= 25 and len(set(named)) == len(named)
    assert {layout.name for layout in LAYOUTS} <= set(FORMATS)


def test_the_header_zone_is_read_and_folded_into_the_key() -> None:
    assert canon("Date(UTC+2)") == ("date(utc)", 120)
    assert canon("Date (+01:00)") == ("date(utc)", 60)
    assert canon("Filled Time(UTC-03:30)") == ("filled_time(utc)", -210)
    assert canon("Timestamp (UTC)") == ("timestamp(utc)", 0)
    assert canon("Filled Time (Local Time)") == ("filled_time_(local_time)", None)


def test_local_times_take_the_import_time_zone_and_a_repeated_hour_is_refused() -> None:
    header = "Date,Time,Symbol,Quantity,Price,Side"
    berlin = {"timezone": "Europe/Berlin"}
    assert parse(header, "07/01/2025,12:00:00,SAP,1,250,Buy", berlin).time == utc("2025-07-01 10:00:00")  # type: ignore[union-attr]
    assert parse(header, "01/02/2025,12:00:00,SAP,1,250,Buy", berlin).time == utc("2025-01-02 11:00:00")  # type: ignore[union-attr]
    with pytest.raises(BadMessageError) as info:  # 02:30 happens twice on 2025-10-26 in Berlin
        parse(header, "10/26/2025,02:30:00,SAP,1,250,Buy", berlin)
    assert info.value.violations[0].field == "Date"
    with pytest.raises(BadMessageError) as bad_zone:
        parse(header, "07/01/2025,12:00:00,SAP,1,250,Buy", {"timezone": "Mars/Olympus"})
    assert bad_zone.value.violations[0].field == "timezone"


def test_utc_layouts_ignore_the_import_time_zone() -> None:
    header = "Date(UTC),Pair,Side,Price,Executed,Amount,Fee"
    row = "2025-03-01 12:00:00,ETHUSDT,BUY,2200,1ETH,2200USDT,2.2USDT"
    assert parse(header, row, {"timezone": "Asia/Tokyo"}).time == utc("2025-03-01 12:00:00")  # type: ignore[union-attr]


def test_day_first_layouts_never_read_month_first() -> None:
    header = "#,PAIR,AMOUNT,PRICE,FEE,FEE CURRENCY,DATE,ORDER ID"
    assert parse(header, "1,BTC/USD,0.1,9000,0,USD,04-02-20 16:52:06,1").time == utc("2020-02-04 16:52:06")  # type: ignore[union-attr]
    with pytest.raises(BadMessageError) as info:
        parse(header, "1,BTC/USD,0.1,9000,0,USD,2020-02-04 16:52:06,1")
    assert info.value.violations[0].rule.startswith("a date like 16-11-24")


def test_rows_that_are_not_fills_are_refused_by_name() -> None:
    header = "Type,Datetime,Account,Amount,Value,Rate,Fee,Sub Type"
    with pytest.raises(BadMessageError) as info:
        parse(header, "Deposit,Jan. 28 2022,Main,2.0 ETH,,,,")
    assert info.value.violations[0].field == "Type" and "not a fill" in info.value.violations[0].rule
    fill = row_parser("bitstamp-transactions", header.split(","))(
        dict(
            zip(
                header.split(","),
                ["Market", "Jan. 28, 2022, 12:31 AM", "Main", "1.0 ETH", "2214 EUR", "2214 EUR", "10.87 EUR", "Sell"],
            )
        ),
        NOW,
    )
    assert fill == Fill("ETHEUR", "SELL", 2214.0, 1.0, utc("2022-01-28 00:31:00"), 10.87, "EUR")


def test_other_kinds_of_file_are_named_not_mapped() -> None:
    keys = {canon(h)[0] for h in ["Date(UTC)", "Coin", "Network", "Amount", "Address", "TXID", "Status"]}
    assert what_kind(keys) == "a Binance deposit or withdrawal history, not trades"
    assert detect_format(["Date(UTC)", "Coin", "Network", "Amount", "Address", "TXID", "Status"]) is None


def test_the_guess_fills_fields_and_a_time_format_only_when_one_fits() -> None:
    header = ["Trade Date", "Product", "Trade Type", "Traded Price", "Amount", "Fee"]
    guess = guess_mapping(header, [["2020/09/29 17:55:30", "LTC/USD", "Buy", "46.43", "0.9", "0"]])
    assert guess == {
        "kind": "fill",
        "symbol": "Product",
        "side": "Trade Type",
        "price": "Traded Price",
        "quantity": "Amount",
        "time": "Trade Date",
        "fee": "Fee",
        "time_format": "%Y/%m/%d %H:%M:%S",
    }
    ambiguous = guess_mapping(["Date", "Pair"], [["03/04/2024 10:00:00", "BTCUSDT"]])
    assert "time_format" not in ambiguous  # month-first or day-first: the trader chooses


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("User ID,Time,Category,Operation,Order ID,Transaction ID,Primary Asset,Realized Amount", "Binance.US"),
        ("User_Id,Time,Category,Operation,Order_Id,Transaction_Id,Primary_Asset", "Binance.US"),
        ("Date(UTC),OrderNo,Pair,Type,Side,Order Price,Order Amount,Time,Executed,Average Price,Status", "order"),
        ("Date,Pair,Type,Sell,Buy,Price,Inverse Price,Date Updated,Status", "Convert"),
        ("Type,Coin,Amount,Wallet Balance,Time(UTC)", "Bybit deposit"),
        ("txid,refid,time,type,subtype,aclass,asset,amount,fee,balance", "Kraken ledger"),
    ],
)
def test_exports_traders_upload_by_mistake_are_named(header: str, says: str) -> None:
    kind = what_kind({canon(h)[0] for h in header.split(",")})
    assert kind is not None and says in kind
    assert detect_format(header.split(",")) is None


def test_a_utcnull_zone_in_the_header_is_utc() -> None:
    header = "Date(UTCnull),Pair,Side,Price,Executed,Amount,Fee"
    fill = parse(header, "2025-03-01 12:00:00,ETHUSDT,BUY,2200,1ETH,2200USDT,2.2USDT")
    assert fill.time == utc("2025-03-01 12:00:00")  # type: ignore[union-attr]
