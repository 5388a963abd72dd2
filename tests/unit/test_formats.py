"""The trade-file formats: detection, parsing of real-looking rows, every rule, fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.errors import BadMessageError
from pipeline.journal.fills import Fill, TradeEntry, fill_content_key, fill_fingerprint
from pipeline.journal.formats import detect_format, escape_cell, parse_row, row_parser

NOW = int(datetime(2025, 1, 10, 12, 0, tzinfo=UTC).timestamp() * 1000)
BINANCE = ["Date(UTC)", "Pair", "Side", "Price", "Executed", "Amount", "Fee"]
BYBIT = [
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
]


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def binance(**over: str) -> dict[str, str]:
    row = dict(
        zip(
            BINANCE, ["2024-11-16 14:35:02", "SOLBUSD", "BUY", "110.03", "0.1800000000SOL", "19.8054BUSD", "0.00018BNB"]
        )
    )
    return {**row, **over}


def bybit(**over: str) -> dict[str, str]:
    row = dict(
        zip(
            BYBIT,
            [
                "BTCUSDT",
                "MARKET",
                "SELL",
                "4570.12345678",
                "91402.46913560",
                "0.05000000",
                "4.57012345",
                "2280000000123456789",
                "1808200000987654321",
                "14:35 2024-11-16",
            ],
        )
    )
    return {**row, **over}


def generic(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "trade_id": "",
        "user_id": "someone-else",
        "symbol": "ETH/USDT",
        "side": "BUY",
        "entry_price": "3100.5",
        "exit_price": "3180.25",
        "quantity": "2",
        "entry_time": "2024-11-16T14:35:02Z",
        "exit_time": "2024-11-16 18:00:00",
        "pnl": "",
        "notes": "breakout retest",
        "source": "excel",
    }
    return {**row, **over}


def violations(fmt: str, row: dict, mapping: dict | None = None) -> dict[str, tuple[object, str]]:
    with pytest.raises(BadMessageError) as info:
        parse_row(fmt, row, mapping, now_ms=NOW)
    return {v.field: (v.value, v.rule) for v in info.value.violations}


def parse_fill(fmt: str, row: dict, mapping: dict | None = None) -> Fill:
    """``parse_row`` of a row the test expects to be a fill (an exchange row or a fill mapping)."""
    parsed = parse_row(fmt, row, mapping, now_ms=NOW)
    assert isinstance(parsed, Fill)
    return parsed


def parse_trade(fmt: str, row: dict, mapping: dict | None = None) -> TradeEntry:
    """``parse_row`` of a row the test expects to be a whole trade (generic, manual or a trade mapping)."""
    parsed = parse_row(fmt, row, mapping, now_ms=NOW)
    assert isinstance(parsed, TradeEntry)
    return parsed


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        (BINANCE, "binance-spot"),
        (["\ufeffDate(UTC)", *BINANCE[1:]], "binance-spot"),
        ([*BINANCE, "Fee Coin"], "binance-spot"),
        ([" date(utc) ", "PAIR", "side", "price", "executed", "amount", "fee"], "binance-spot"),
        (BYBIT, "bybit-spot"),
        (["\ufeffSpot Pairs", *BYBIT[1:]], "bybit-spot"),
        (
            [
                "trade_id",
                "user_id",
                "symbol",
                "side",
                "entry_price",
                "exit_price",
                "quantity",
                "entry_time",
                "exit_time",
                "pnl",
                "notes",
                "source",
            ],
            "generic",
        ),
        (["Symbol", "Side", "Entry Price", "Quantity", "Entry Time", "tags", "setup"], "generic"),
        (["symbol", "side", "price", "qty", "time"], None),
        (["Date", "Pair", "Side"], None),
    ],
)
def test_detects_the_format_from_the_header(header: list[str], fmt: str | None) -> None:
    assert detect_format(header) == fmt


# --------------------------------------------------------------------------- exchange rows


def test_binance_row_becomes_a_fill_with_asset_suffixes_stripped() -> None:
    fill = parse_row("binance-spot", binance(), now_ms=NOW)
    assert fill == Fill("SOLBUSD", "BUY", 110.03, 0.18, ms("2024-11-16 14:35:02"), 0.00018, "BNB", None)


def test_binance_fee_coin_variant_takes_the_asset_from_its_column() -> None:
    row = {**binance(Side="sell", Fee="0.0198054"), "Fee Coin": "busd"}
    fill = parse_fill("binance-spot", row)
    assert (fill.side, fill.fee, fill.fee_asset) == ("SELL", 0.0198054, "BUSD")


def test_binance_asset_starting_with_a_digit_is_split_by_the_pair() -> None:
    fill = parse_fill(
        "binance-spot",
        binance(Pair="1INCHUSDT", Price="0.424", Executed="12.51INCH", Amount="5.3USDT", Fee="0.0121INCH"),
    )
    assert (fill.symbol, fill.quantity, fill.fee, fill.fee_asset) == ("1INCHUSDT", 12.5, 0.012, "1INCH")


def test_thousands_separators_and_spaces_are_numbers() -> None:
    fill = parse_fill(
        "binance-spot",
        binance(Pair="BTCUSDT", Price=" 91,234.5 ", Executed="0.01BTC", Amount="912.345USDT"),
    )
    assert fill.price == 91234.5


def test_bybit_row_has_its_transaction_id_and_the_fee_in_the_received_asset() -> None:
    fill = parse_row("bybit-spot", bybit(), now_ms=NOW)
    assert fill == Fill(
        "BTCUSDT", "SELL", 91402.4691356, 0.05, ms("2024-11-16 14:35:00"), 4.57012345, "USDT", "2280000000123456789"
    )
    buy = parse_fill("bybit-spot", bybit(**{"Spot Pairs": "ETH/USDT", "Direction": "Buy", "Fees": "0.00021"}))
    assert (buy.symbol, buy.side, buy.fee_asset) == ("ETHUSDT", "BUY", "ETH")
    suffixed = parse_fill("bybit-spot", bybit(Fees="0.1MNT"))
    assert (suffixed.fee, suffixed.fee_asset) == (0.1, "MNT")


@pytest.mark.parametrize(
    ("cell", "rule"),
    [
        ("HOLD", "one of BUY, SELL"),
        ("long", "one of BUY, SELL"),
        ("", "required"),
    ],
)
def test_exchange_sides_are_buy_or_sell_only(cell: str, rule: str) -> None:
    assert violations("binance-spot", binance(Side=cell)) == {"Side": (cell, rule)}


@pytest.mark.parametrize(
    ("column", "cell", "rule"),
    [
        ("Price", "0", "> 0"),
        ("Price", "-110.03", "> 0"),
        ("Price", "abc", "a number like 1234.5"),
        ("Price", "NaN", "a number like 1234.5"),
        ("Price", "inf", "a number like 1234.5"),
        ("Price", "1e999", "a number like 1234.5"),
        ("Price", "1_000", "a number like 1234.5"),
        ("Price", "1,23", "a number like 1234.5"),
        ("Executed", "0SOL", "> 0"),
        ("Executed", "-0.18SOL", "> 0"),
        ("Executed", "lotsSOL", "a number like 1234.5"),
        ("Amount", "n/a", "a number like 1234.5"),
        ("Fee", "-0.1BNB", ">= 0"),
        ("Pair", "BTC USDT!!", "a pair of 2 to 20 letters or digits like BTCUSDT or BTC/USDT"),
        ("Date(UTC)", "2030-01-01 00:00:00", "a date not in the future"),
        ("Date(UTC)", "16/11/2024 14:35", "a date like 2024-11-16 14:35:02 (UTC)"),
    ],
)
def test_each_bad_cell_names_column_value_and_rule(column: str, cell: str, rule: str) -> None:
    assert violations("binance-spot", binance(**{column: cell})) == {column: (cell, rule)}


def test_a_date_within_five_minutes_of_now_is_not_the_future() -> None:
    soon = datetime.fromtimestamp((NOW + 4 * 60_000) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert parse_fill("binance-spot", binance(**{"Date(UTC)": soon})).time == NOW + 4 * 60_000


def test_every_bad_field_of_a_row_is_reported_at_once() -> None:
    found = violations("binance-spot", binance(Side="hold", Price="0", Executed="x", **{"Date(UTC)": "soon"}))
    assert set(found) == {"Side", "Price", "Executed", "Date(UTC)"}
    bybit_found = violations("bybit-spot", bybit(Direction="", **{"Filled Price": "-1", "Timestamp (UTC)": "25:99"}))
    assert bybit_found == {
        "Direction": ("", "required"),
        "Filled Price": ("-1", "> 0"),
        "Timestamp (UTC)": ("25:99", "a date like 14:35 2024-11-16 (UTC)"),
    }


# --------------------------------------------------------------------------- whole trades


def test_generic_row_computes_pnl_and_ignores_user_and_source_columns() -> None:
    entry = parse_row("generic", generic(fees="1.5", tags="breakout; a+ setup|news,fomo"), now_ms=NOW)
    assert isinstance(entry, TradeEntry)
    assert (entry.symbol, entry.side, entry.entry_time, entry.exit_time) == (
        "ETHUSDT",
        "BUY",
        ms("2024-11-16 14:35:02"),
        ms("2024-11-16 18:00:00"),
    )
    assert entry.pnl == pytest.approx((3180.25 - 3100.5) * 2 - 1.5)
    assert entry.tags == ("breakout", "a+ setup", "news", "fomo")
    assert entry.external_id is None


def test_short_pnl_and_unix_seconds_and_milliseconds() -> None:
    entry = parse_trade(
        "generic",
        generic(side="short", entry_time="1731767702", exit_time=1731780000000, trade_id=" T-77 "),
    )
    assert entry.side == "SELL"
    assert (entry.entry_time, entry.exit_time) == (1731767702000, 1731780000000)
    assert entry.pnl == pytest.approx((3100.5 - 3180.25) * 2)
    assert entry.external_id == "T-77"


def test_a_given_pnl_is_kept_and_an_open_trade_has_none() -> None:
    assert parse_trade("generic", generic(pnl="-12.5")).pnl == -12.5
    still_open = parse_trade("generic", generic(exit_price="", exit_time=""))
    assert (still_open.exit_price, still_open.exit_time, still_open.pnl) == (None, None, None)


def test_exit_price_and_time_go_together_and_exit_is_not_before_entry() -> None:
    assert violations("generic", generic(exit_time="")) == {"exit_time": ("", "given together with exit_price")}
    assert violations("generic", generic(exit_time="2024-11-16 10:00:00")) == {
        "exit_time": ("2024-11-16 10:00:00", "not before entry_time")
    }


def test_generic_errors_name_every_field() -> None:
    found = violations(
        "generic",
        generic(side="flat", entry_price="1,23", quantity="0", entry_time="yesterday", fees="-1", stop_loss="0"),
    )
    assert found["side"] == ("flat", "one of BUY, SELL, B, S, LONG, SHORT")
    assert found["entry_price"] == ("1,23", "a number like 1234.5")
    assert found["quantity"] == ("0", "> 0")
    assert found["entry_time"][0] == "yesterday" and "2024-11-16T14:35:02Z" in found["entry_time"][1]
    assert found["fees"] == ("-1", ">= 0") and found["stop_loss"] == ("0", "> 0")


def test_formula_like_text_is_kept_verbatim() -> None:
    for text in ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "=cmd|' /C calc'!A0"):
        entry = parse_trade("generic", generic(notes=text, setup=text, emotion=text))
        assert (entry.notes, entry.setup, entry.emotion) == (text, text, text)


def test_manual_entry_takes_python_values_from_the_form_and_the_api() -> None:
    entry = parse_row(
        "manual",
        {
            "symbol": "btcusdt",
            "side": "b",
            "entry_price": 68000.5,
            "quantity": 0.1,
            "entry_time": datetime(2024, 11, 16, 14, 35, tzinfo=UTC),
            "exit_price": None,
            "exit_time": None,
            "tags": ["scalp", " fomo "],
            "notes": None,
            "stop_loss": 67000,
        },
        now_ms=NOW,
    )
    assert entry == TradeEntry(
        "BTCUSDT", "BUY", 68000.5, 0.1, ms("2024-11-16 14:35:00"), stop_loss=67000.0, tags=("scalp", "fomo")
    )
    found = violations(
        "manual",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "entry_price": float("nan"),
            "quantity": True,
            "entry_time": NOW + 3_600_000,
        },
    )
    assert found == {
        "entry_price": (found["entry_price"][0], "a number like 1234.5"),
        "quantity": (True, "a number like 1234.5"),
        "entry_time": (NOW + 3_600_000, "a date not in the future"),
    }


def test_missing_required_fields_are_named() -> None:
    found = violations("manual", {"symbol": "", "notes": "forgot everything"})
    assert found == {
        f: (None if f != "symbol" else "", "required")
        for f in ("symbol", "side", "entry_price", "quantity", "entry_time")
    }


# --------------------------------------------------------------------------- custom mappings


def test_custom_fill_mapping_with_time_format_and_side_words() -> None:
    mapping = {
        "kind": "fill",
        "symbol": "Market",
        "side": "B/S",
        "price": "Px",
        "quantity": "Qty",
        "time": "When",
        "fee": "Commission",
        "fee_asset": "Commission Asset",
        "exchange_id": "Id",
        "time_format": "%d/%m/%Y %H:%M",
        "side_buy": "bid,b",
        "side_sell": "ask,s",
    }
    row = {
        "Market": "XRP-USDT",
        "B/S": "Ask",
        "Px": "0.5123",
        "Qty": "1,000",
        "When": "16/11/2024 14:35",
        "Commission": "0.05",
        "Commission Asset": "usdt",
        "Id": "ord-9",
    }
    assert parse_row("custom", row, mapping, now_ms=NOW) == Fill(
        "XRPUSDT", "SELL", 0.5123, 1000.0, ms("2024-11-16 14:35:00"), 0.05, "USDT", "ord-9"
    )
    found = violations("custom", {**row, "When": "2024-11-16 14:35", "B/S": "hold"}, mapping)
    assert found["When"] == ("2024-11-16 14:35", "a date in the form %d/%m/%Y %H:%M")
    assert found["B/S"][1].startswith("one of BUY, SELL") and "BID" in found["B/S"][1]


def test_custom_trade_mapping_names_missing_targets_and_unknown_columns() -> None:
    row = {"Ticker": "AAPL", "Direction": "Long", "Open": "190.5", "Size": "10", "Opened": "2024-11-16"}
    mapping = {
        "kind": "trade",
        "symbol": "Ticker",
        "side": "Direction",
        "entry_price": "Open",
        "quantity": "Size",
        "entry_time": "Opened",
    }
    entry = parse_trade("custom", row, mapping)
    assert (entry.symbol, entry.side, entry.entry_time) == ("AAPL", "BUY", ms("2024-11-16 00:00:00"))
    found = violations("custom", row, {"kind": "trade", "symbol": "Ticker", "side": "Nope", "price": "Open"})
    assert found["side"] == ("Nope", f"a column of the file: {', '.join(row)}")
    assert found["entry_price"] == (None, "required: map a column of the file to it")
    assert found["price"][1].startswith("a target of a trade")
    assert violations("custom", row, {"kind": "order"}) == {"kind": ("order", "one of fill, trade")}
    assert violations("custom", row) == {"mapping": (None, "a column mapping for format custom")}


# --------------------------------------------------------------------------- export and fingerprints


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+33 6", "'+33 6"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("breakout", "breakout"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_escape_cell_defuses_formulas(cell: str, safe: str) -> None:
    assert escape_cell(cell) == safe


def test_identical_rows_in_one_file_get_distinct_ids_and_a_second_parse_the_same_ids() -> None:
    rows = [binance(), binance(), binance(Price="110.04")]

    def ids() -> list[str]:
        parse = row_parser("binance-spot", BINANCE)
        seen: dict[str, int] = {}
        out = []
        for row in rows:
            fill = parse(row, NOW)
            assert isinstance(fill, Fill)
            key = fill_content_key("u-1", fill)
            out.append(fill_fingerprint("u-1", fill, seen.get(key, 0), venue="binance-spot"))
            seen[key] = seen.get(key, 0) + 1
        return out

    first = ids()
    assert len(set(first)) == 3
    assert ids() == first
    other_user = fill_fingerprint("u-2", parse_fill("binance-spot", binance()), 0, venue="binance-spot")
    assert other_user not in first
    bybit_fill = parse_fill("bybit-spot", bybit())
    assert fill_fingerprint("u-1", bybit_fill, 0, "bybit-spot") == fill_fingerprint("u-1", bybit_fill, 3, "bybit-spot")
