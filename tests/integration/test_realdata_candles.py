"""Every real candle file in ``../shared/realdata/candles/`` replays with the right times: each is
read whole with its first and last candle time, its interval and its refused rows stated here.
The files are third-party test data read from that folder only; without it these tests skip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.candles import DUPLICATE_TIME, read_candles
from tests.realdata import realdata_dir

FOLDER = realdata_dir() / "candles"
pytestmark = pytest.mark.skipif(not FOLDER.is_dir(), reason=f"no real data at {FOLDER}")
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000

# file -> (format, candles, first candle (UTC), interval ms, refused rows as (line, rule))
OUTCOMES: dict[str, tuple[str, int, str, int, list[tuple[int, str]]]] = {
    "backtrader__2006-01-02-volume-min-001.txt": ("dated", 3000, "2006-01-02 09:01", MIN, []),
    "backtrader__2006-day-001.txt": ("dated", 255, "2006-01-02 00:00", DAY, []),
    "backtrader__2006-min-005.txt": ("dated", 2142, "2006-01-02 09:05", 5 * MIN, []),
    "backtrader__2006-volume-day-001.txt": ("dated", 255, "2006-01-02 00:00", DAY, []),
    "backtrader__2006-week-001.txt": ("dated", 52, "2006-01-06 00:00", 7 * DAY, []),
    "backtrader__nvda-2014.txt": ("dated", 252, "2014-01-02 00:00", DAY, []),
    "backtrader__orcl-2014.txt": ("dated", 252, "2014-01-02 00:00", DAY, []),
    "backtrader__ticksample.csv": ("dated", 134, "2015-09-23 20:57:42.146", 250, [(24, DUPLICATE_TIME)]),
    "backtrader__yhoo-1996-2015.txt": ("dated", 4965, "1996-04-12 00:00", DAY, []),
    "backtrader__yhoo-2014.txt": ("dated", 252, "2014-01-02 00:00", DAY, []),
    "batmayacagiz__BTCUSDT-1h-2022-01.csv": ("binance-klines", 744, "2022-01-01 00:00", HOUR, []),
    "freqtrade__ADA_BTC-5m.feather": ("feather", 5720, "2018-01-10 04:55", 5 * MIN, []),
    "freqtrade__ADA_BTC-5m.feather.ohlcv.csv": ("ohlcv", 5720, "2018-01-10 04:55", 5 * MIN, []),
    "freqtrade__ETH_BTC-5m.feather": ("feather", 5760, "2018-01-10 04:55", 5 * MIN, []),
    "freqtrade__ETH_BTC-5m.feather.ohlcv.csv": ("ohlcv", 5760, "2018-01-10 04:55", 5 * MIN, []),
    "freqtrade__UNITTEST_BTC-1m.json": ("freqtrade-json", 13681, "2017-11-04 23:02", MIN, []),
    "freqtrade__UNITTEST_BTC-1m.json.ohlcv.csv": ("ohlcv", 13681, "2017-11-04 23:02", MIN, []),
    "freqtrade__XRP_ETH-1m.feather": ("feather", 2469, "2019-10-11 00:00", MIN, []),
    "freqtrade__XRP_ETH-1m.feather.ohlcv.csv": ("ohlcv", 2469, "2019-10-11 00:00", MIN, []),
    "freqtrade__XRP_ETH-5m.feather": ("feather", 706, "2019-10-11 00:00", 5 * MIN, []),
    "freqtrade__XRP_ETH-5m.feather.ohlcv.csv": ("ohlcv", 706, "2019-10-11 00:00", 5 * MIN, []),
    "freqtrade__XRP_USDT_USDT-1h-futures.feather": ("feather", 100, "2021-11-17 01:00", HOUR, []),
    "freqtrade__XRP_USDT_USDT-1h-futures.feather.ohlcv.csv": ("ohlcv", 100, "2021-11-17 01:00", HOUR, []),
    "freqtrade__XRP_USDT_USDT-5m-futures.feather": ("feather", 1999, "2021-11-15 00:00", 5 * MIN, []),
    "freqtrade__XRP_USDT_USDT-5m-futures.feather.ohlcv.csv": ("ohlcv", 1999, "2021-11-15 00:00", 5 * MIN, []),
    "isda__ADAUSDT-1m-2025-01.csv": ("binance-klines", 60, "2025-01-01 00:00", MIN, []),
    "isda__BTCUSDT-1m-2021-01.csv": ("binance-klines", 60, "2021-01-01 00:00", MIN, []),
    "jesse__test_candles_0.py.ohlcv.csv": ("ohlcv", 1382, "2019-03-29 00:00", MIN, []),
    "jesse__test_candles_1.py.ohlcv.csv": ("ohlcv", 55, "2019-01-11 09:55", MIN, []),
    "jesse__test_candles_indicators.py.test_candles_2.ohlcv.csv": ("ohlcv", 210, "2019-12-05 12:00", 4 * HOUR, []),
    # newest first in the file: every row kept, sorted; its steps are 3 hours
    "jesse__test_candles_indicators.py.test_candles_3.ohlcv.csv": ("ohlcv", 239, "2019-06-06 15:00", 3 * HOUR, []),
    "jesse__test_candles_indicators.py.test_candles_btc.ohlcv.csv": ("ohlcv", 300, "2023-01-15 06:43", MIN, []),
    "jesse__test_candles_indicators.py.test_candles_sol.ohlcv.csv": ("ohlcv", 300, "2023-01-01 00:00", MIN, []),
    "jesse__test_candles_indicators.py.wavetrend_candles.ohlcv.csv": ("ohlcv", 240, "2021-06-29 10:00", 2 * HOUR, []),
}


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_every_file_in_the_folder_has_an_outcome() -> None:
    assert sorted(p.name for p in FOLDER.iterdir()) == sorted(OUTCOMES)


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_the_file_replays_with_the_right_times(name: str) -> None:
    fmt, count, first, interval, refused = OUTCOMES[name]
    f = read_candles(FOLDER / name)
    assert (f.format, len(f.frame), f.interval_ms) == (fmt, count, interval)
    assert int(f.frame["start"].iloc[0]) == ms(first)
    assert f.frame["start"].is_monotonic_increasing and f.frame["start"].is_unique
    assert [(p.line, p.reason) for p in f.rejected] == refused


def test_feather_and_json_give_the_same_candles_as_their_csv_conversions() -> None:
    for original in ("freqtrade__ADA_BTC-5m.feather", "freqtrade__UNITTEST_BTC-1m.json"):
        a = read_candles(FOLDER / original).frame
        b = read_candles(FOLDER / f"{original}.ohlcv.csv").frame
        assert a["start"].tolist() == b["start"].tolist()
        assert (
            a[["open", "high", "low", "close", "volume"]] - b[["open", "high", "low", "close", "volume"]]
        ).abs().max().max() < 1e-12


def test_the_newest_first_file_is_the_reverse_of_its_rows() -> None:
    f = read_candles(FOLDER / "jesse__test_candles_indicators.py.test_candles_3.ohlcv.csv")
    assert f.reordered and f.rejected == []
