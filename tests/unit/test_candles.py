"""Reading candle files: formats, time units, refused rows with their line/column/value/rule, specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.candles import CandleFileError, CandleProblem, read_candles, symbol_from_name
from pipeline.errors import ConfigError, PipelineError
from pipeline.sources.replay import replay_files_from_spec

CANDLES = Path(__file__).resolve().parents[1] / "fixtures" / "candles"
T0 = 1731715200000  # 2024-11-16 00:00 UTC, the first candle of the 2024 samples
J0 = 1735689600000  # 2025-01-01 00:00 UTC
FIRST_THREE = [  # (open, high, low, close, volume) of the samples' first three candles
    (91000.00, 91050.50, 90980.10, 91020.00, 12.5),
    (91020.00, 91100.00, 91010.00, 91090.00, 8.25),
    (91090.00, 91120.00, 91000.00, 91010.00, 5.0),
]


def candles_of(path: Path, n: int = 3) -> list[tuple[float, ...]]:
    frame = read_candles(path).frame
    return [tuple(row) for row in frame[["open", "high", "low", "close", "volume"]].head(n).itertuples(index=False)]


def test_a_binance_kline_file_in_milliseconds() -> None:
    f = read_candles(CANDLES / "BTCUSDT-1m-2024-11-16.csv")
    assert f.format == "binance-klines"
    assert f.interval_ms == 60_000
    assert f.rejected == []
    assert list(f.frame.columns) == ["start", "open", "high", "low", "close", "volume"]
    assert str(f.frame["start"].dtype) == "int64"
    assert all(str(f.frame[c].dtype) == "float64" for c in ("open", "high", "low", "close", "volume"))
    assert f.frame["start"].tolist() == [T0 + k * 60_000 for k in range(10)]
    assert candles_of(CANDLES / "BTCUSDT-1m-2024-11-16.csv") == FIRST_THREE


def test_a_2025_spot_kline_file_in_microseconds_gives_milliseconds() -> None:
    f = read_candles(CANDLES / "BTCUSDT-1m-2025-01-01.csv")
    assert f.format == "binance-klines"
    assert f.frame["start"].tolist() == [J0 + k * 60_000 for k in range(4)]
    assert f.interval_ms == 60_000


def test_a_kline_file_with_its_header_a_bom_and_crlf_lines() -> None:
    f = read_candles(CANDLES / "klines-with-header-bom.csv")
    assert f.format == "binance-klines" and f.rejected == []
    assert f.frame["start"].tolist() == [T0, T0 + 60_000, T0 + 120_000]
    assert candles_of(CANDLES / "klines-with-header-bom.csv") == FIRST_THREE


@pytest.mark.parametrize("name", ["ohlcv-ms.csv", "ohlcv-seconds-upper.csv"])
def test_a_plain_ohlcv_file_with_epoch_times(name: str) -> None:
    f = read_candles(CANDLES / name)
    assert f.format == "ohlcv" and f.rejected == []
    assert f.frame["start"].tolist() == [T0, T0 + 60_000, T0 + 120_000]
    assert candles_of(CANDLES / name) == FIRST_THREE


def test_a_plain_ohlcv_file_with_iso_times_utc_offsets_and_a_bad_time() -> None:
    f = read_candles(CANDLES / "ohlcv-iso.csv")
    assert f.format == "ohlcv"
    assert f.frame["start"].tolist() == [T0, T0 + 60_000, T0 + 120_000]  # Z, +01:00 and naive (UTC)
    assert f.rejected == [CandleProblem(5, "timestamp", "yesterday", "not an ISO-8601 date-time")]


def test_microsecond_ohlcv_times_and_a_bom_before_the_header(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "\ufeffTIMESTAMP,Volume,open,high,low,close,extra\n"
        f"{J0 * 1000},1.5,10,11,9,10.5,x\n{(J0 + 60_000) * 1000},2,10.5,12,10,11,y\n",
        encoding="utf-8",
    )
    f = read_candles(path)
    assert f.format == "ohlcv" and f.rejected == []
    assert f.frame.to_dict("records") == [
        {"start": J0, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1.5},
        {"start": J0 + 60_000, "open": 10.5, "high": 12.0, "low": 10.0, "close": 11.0, "volume": 2.0},
    ]


def test_each_bad_row_is_reported_with_its_line_column_value_and_rule() -> None:
    f = read_candles(CANDLES / "bad-rows.csv")
    found = {(p.line, p.column, p.value, p.reason) for p in f.rejected}
    expected = {
        (3, "open", "abc", "not a number"),
        (5, "low", "0", "non-positive price"),
        (6, "high", "90900.00", "high < low"),
        (7, "high", "91050.00", "high below open/close"),
        (8, "low", "91010.00", "low above open/close"),
        (9, "volume", "-1.5", "negative volume"),
        (11, "open_time", str(T0 + 4 * 60_000), "duplicate time"),
        (15, "low", "", "not a number"),  # a truncated row
    }
    assert expected <= found
    # line 13 is blank: skipped; line 12 (the 00:02 candle, whose first row on line 3 was bad) is
    # out of order and is sorted into its place
    assert {p.line for p in f.rejected} == {3, 5, 6, 7, 8, 9, 11, 15}
    assert [p.line for p in f.rejected] == sorted(p.line for p in f.rejected)
    # the good rows are kept, sorted; the first of a duplicated time wins
    assert f.frame["start"].tolist() == [T0 + k * 60_000 for k in (0, 1, 2, 3, 4, 5, 7, 8, 9)]
    assert f.reordered
    assert f.frame.iloc[4].to_dict() == {
        "start": T0 + 240_000,
        "open": 91010.0,
        "high": 91010.0,
        "low": 90890.37,
        "close": 90901.11,
        "volume": 17.31337,
    }
    assert f.interval_ms == 60_000


def test_a_file_that_is_not_a_candle_file_says_what_was_expected_and_found() -> None:
    with pytest.raises(CandleFileError) as info:
        read_candles(CANDLES / "binance-trade-history.csv")
    message = str(info.value)
    assert isinstance(info.value, PipelineError)
    assert "\n" not in message
    assert "binance-trade-history.csv" in message
    assert "timestamp,open,high,low,close,volume" in message and "open_time" in message
    assert "Date(UTC),Pair,Side" in message and "7 columns" in message


@pytest.mark.parametrize(
    "content, words",
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("1731715200000,1,2,0.5,1.5,3\n", "6 columns"),  # klines need 12 columns
        ("time,open,high,low,close,volume\n1,2,3,4,5,6\n", "time,open"),
    ],
)
def test_empty_and_wrongly_shaped_files_are_refused(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(content)
    with pytest.raises(CandleFileError, match=words):
        read_candles(path)


def test_a_header_only_file_has_no_candles(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("timestamp,open,high,low,close,volume\n")
    f = read_candles(path)
    assert f.frame.empty and list(f.frame.columns) == ["start", "open", "high", "low", "close", "volume"]
    assert f.rejected == [] and f.interval_ms == 60_000


def test_max_bytes_refuses_a_larger_file() -> None:
    path = CANDLES / "BTCUSDT-1m-2024-11-16.csv"
    with pytest.raises(CandleFileError, match="limit of 100"):
        read_candles(path, max_bytes=100)
    assert len(read_candles(path, max_bytes=path.stat().st_size).frame) == 10


@pytest.mark.parametrize(
    "name, symbol",
    [
        ("BTCUSDT-1m-2024-11-16.csv", "BTCUSDT"),
        ("data/ETHUSDT-1h-2024-11.csv", "ETHUSDT"),
        ("SOLUSDT-1s-2025-01-01.zip", "SOLUSDT"),
        ("btc.csv", None),
        ("BTCUSDT.csv", None),
        ("BTCUSDT-1m-latest.csv", None),
    ],
)
def test_symbol_from_name(name: str, symbol: str | None) -> None:
    assert symbol_from_name(name) == symbol
    assert symbol_from_name(Path(name)) == symbol


def test_replay_files_from_spec() -> None:
    assert replay_files_from_spec("BTCUSDT=data/btc.csv, ethusdt=data/eth.csv") == {
        "BTCUSDT": Path("data/btc.csv"),
        "ETHUSDT": Path("data/eth.csv"),
    }
    assert replay_files_from_spec("data/BTCUSDT-1m-2024-11-16.csv") == {
        "BTCUSDT": Path("data/BTCUSDT-1m-2024-11-16.csv")
    }
    assert replay_files_from_spec("SOLUSDT-1m-2024-11.csv,XRPUSDT=x.csv,") == {
        "SOLUSDT": Path("SOLUSDT-1m-2024-11.csv"),
        "XRPUSDT": Path("x.csv"),
    }


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "names no file"),
        (" , ", "names no file"),
        ("data/btc.csv", "cannot tell the symbol"),
        ("BTCUSDT=", "names no file"),
        ("BTC=btc.csv", "does not match"),
        ("BTCUSDT=a.csv,BTCUSDT=b.csv", "given twice"),
    ],
)
def test_a_bad_replay_spec_is_a_config_error_of_one_line(spec: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        replay_files_from_spec(spec)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- layouts and per-row units

MS_ROW = "1735603200000,92792.05,96250.00,92033.73,93576.00,19612.0,1735689599999,1.8e9,3347847,9687.9,9.1e8,0"
US_ROW = "1735689600000000,93576.00,95151.15,92888.00,94591.79,10373.3,1735775999999999,9.7e8,1516556,5347.7,5.0e8,0"


def test_a_kline_file_joined_from_ms_and_us_months_dates_every_row(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1d-joined.csv"
    path.write_text(f"{US_ROW}\n{MS_ROW}\n")  # and out of order too
    f = read_candles(path)
    assert f.frame["start"].tolist() == [1735603200000, 1735689600000] and f.rejected == []
    assert f.interval_ms == 86_400_000 and f.reordered


def test_a_time_that_cannot_be_dated_right_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("timestamp,open,high,low,close,volume\n1735603200000,1,1,1,1,1\n86399,1,1,1,1,1\n9e19,1,1,1,1,1\n")
    f = read_candles(path, now_ms=1_800_000_000_000)
    assert [(p.line, p.column, p.reason) for p in f.rejected] == [
        (3, "timestamp", "a time after 1970-01-02 (as seconds, ms, µs or ns since 1970)"),
        (4, "timestamp", "a time not more than a day after now"),
    ]
    assert len(f.frame) == 1


def test_yahoo_daily_and_date_time_files(tmp_path: Path) -> None:
    yahoo = tmp_path / "AAPL.csv"
    yahoo.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-03,184.2,185.8,183.4,184.2,183.0,58414500\n"
        "2024-01-02,187.1,188.4,183.8,185.6,184.5,82488700\n"
        "2024-01-05,181.9,182.7,180.1,181.1,180.0,62303300\n"
    )
    f = read_candles(yahoo)
    assert f.format == "dated" and f.interval_ms == 86_400_000 and f.reordered
    assert f.frame["start"].tolist() == [1704153600000, 1704240000000, 1704412800000]
    minutes = tmp_path / "m.txt"
    minutes.write_text(
        "Date,Open,High,Low,Close,Volume,OpenInterest\n2006-01-02,09:01:00,10,11,9,10.5,5,0\n"
        "2006-01-02,09:02:00,10.5,11,10,10.8,3,0\n2006-01-02,09:03:00,10.8,11,10,10.9,3,0\n"
    )
    g = read_candles(minutes)  # a Time in every row that the header does not name
    assert g.frame["start"].tolist() == [1136192460000, 1136192520000, 1136192580000]
    assert g.frame["close"].tolist() == [10.5, 10.8, 10.9]


def test_freqtrade_json_candles(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-5m.json"
    path.write_text("[[1700000300000,2,3,1,2.5,10],[1700000000000,1,2,0.5,1.5,9],[1700000000000,1,2,0.5,1.5,9]]")
    f = read_candles(path)
    assert f.format == "freqtrade-json" and f.frame["start"].tolist() == [1700000000000, 1700000300000]
    assert [(p.line, p.reason) for p in f.rejected] == [(3, "duplicate time")]
