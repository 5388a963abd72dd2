"""Stock rules without a bus: the symbol rule and seed 003's bar format, NYSE hours from the
calendar (holidays, early closes, the closed-market line), the session-only simulator and the
stock file reader."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.bus.base import Outgoing
from pipeline.errors import BadMessageError
from pipeline.fanout import InProcessFanout
from pipeline.messages import StockPrice, StockTrade, build, decode, encode
from pipeline.sources.stock_replay import read_stock_file
from pipeline.sources.stock_simulator import StockSimulatorSource
from pipeline.sources.stocks import StockFeed
from pipeline.stocks.hours import market_hours
from pipeline.topics import STOCK_PRICES_RAW, STOCK_TRADES_RAW
from pipeline.worker_health import Health
from storage.stocks import day_start

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stocks"
# The shared real files sit beside the checkout (../shared), or beside the folder of worktrees.
_ROOT = Path(__file__).resolve().parents[2]
REALDATA = next(
    (
        p
        for p in (
            _ROOT.parent / "shared" / "realdata" / "candles",
            _ROOT.parent.parent / "shared" / "realdata" / "candles",
        )
        if p.is_dir()
    ),
    _ROOT.parent / "shared" / "realdata" / "candles",
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- messages ----------------------------------------------------------------------------------


def test_seed_003s_own_example_is_a_valid_stock_price() -> None:
    raw = (
        b'{"symbol": "VCB", "time": "2024-12-04T09:15:00+07:00", "open": 85.5, "high": 86.2, "low": 85.0, '
        b'"close": 86.0, "volume": 1250000, "collected_at": "2024-12-04T09:15:30.123456"}'
    )
    bar = decode(STOCK_PRICES_RAW, raw)
    assert isinstance(bar, StockPrice) and bar.timeframe == "1Min" and bar.start_ms == 1733278500000


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        ({"symbol": "BTC/USD"}, "symbol", "matches"),
        ({"time": "2024-12-04 09:15"}, "time", "with an offset"),
        ({"high": 84.0}, "high", "high >= low"),
        ({"close": 87.0}, "high", "high >= open and close"),
        ({"open": 84.9}, "low", "low <= open and close"),
        ({"volume": -1}, "volume", ">= 0"),
        ({"timeframe": "5Min"}, "timeframe", "one of"),
    ],
)
def test_a_stock_bar_that_breaks_a_rule_names_the_field_and_the_rule(fields: dict, field: str, rule: str) -> None:
    good = {
        "symbol": "AAPL",
        "time": "2026-12-01T09:30:00-05:00",
        "open": 85.5,
        "high": 86.2,
        "low": 85.0,
        "close": 86.0,
        "volume": 10,
        "collected_at": "2026-12-01T09:31:00-05:00",
    }
    with pytest.raises(BadMessageError) as err:
        build(StockPrice, **{**good, **fields})
    assert any(v.field == field and rule in v.rule for v in err.value.violations), err.value.violations


def test_stock_trades_encode_as_pydantic_does_and_key_by_symbol() -> None:
    trade = build(
        StockTrade, symbol="BRK.B", timestamp=1, price=1.5, size=0, trade_id=9, conditions=["@", "I"], collected_at=2
    )
    assert encode(trade) == trade.__pydantic_serializer__.to_json(trade) and trade.key() == b"BRK.B"
    assert decode(STOCK_TRADES_RAW, encode(trade)) == trade
    with pytest.raises(BadMessageError, match="price > 0"):
        build(StockTrade, symbol="AAPL", timestamp=1, price=0, size=1, trade_id=1, collected_at=2)


# -- hours -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "is_open", "label"),
    [
        ("2026-12-01T14:30:00+00:00", True, "market open, closes 16:00 ET"),
        ("2026-12-01T14:29:00+00:00", False, "market closed, opens 09:30 ET"),
        ("2026-12-05T15:00:00+00:00", False, "market closed, opens Mon 7 Dec 09:30 ET"),
        ("2026-11-26T15:00:00+00:00", False, "market closed, opens Fri 27 Nov 09:30 ET"),  # Thanksgiving
        ("2026-11-27T17:59:00+00:00", True, "market open, closes 13:00 ET (early close)"),  # the day after
        ("2026-11-27T18:00:00+00:00", False, "market closed, opens Mon 30 Nov 09:30 ET"),
        ("2026-12-25T15:00:00+00:00", False, "market closed, opens Mon 28 Dec 09:30 ET"),
    ],
)
def test_market_hours_follow_the_nyse_calendar(when: str, is_open: bool, label: str) -> None:
    status = market_hours().status(at(when))
    assert status.open is is_open and status.label == label


def test_session_minutes_skip_nights_and_weekends() -> None:
    minutes = market_hours().session_minutes(at("2026-12-07T14:32:00+00:00"), 4)  # Monday 09:32
    assert [datetime.fromtimestamp(m / 1000, tz=UTC).isoformat() for m in minutes] == [
        "2026-12-04T20:58:00+00:00",
        "2026-12-04T20:59:00+00:00",
        "2026-12-07T14:30:00+00:00",
        "2026-12-07T14:31:00+00:00",
    ]


def test_a_day_starts_at_midnight_in_new_york_across_daylight_saving() -> None:
    assert datetime.fromtimestamp(day_start(1_796_135_400_000) / 1000, tz=UTC).hour == 5  # EST
    assert datetime.fromtimestamp(day_start(1_783_000_000_000) / 1000, tz=UTC).hour == 4  # EDT


# -- the simulator -----------------------------------------------------------------------------


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None, headers=None) -> None:
        self.sent.append((topic, value or b""))

    def produce_many(self, messages: Sequence[Outgoing]) -> None:
        for topic, value, key, headers in messages:
            self.produce(topic, value, key, headers)

    def flush(self, timeout: float = 30.0) -> int:
        return 0

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("when", "trades"),
    [("2026-12-01T15:00:00+00:00", True), ("2026-12-05T15:00:00+00:00", False), ("2026-12-25T15:00:00+00:00", False)],
)
def test_the_simulator_trades_only_in_session(when: str, trades: bool) -> None:
    now = at(when).timestamp()
    sim = StockSimulatorSource(None, InProcessFanout(), ("AAPL", "MSFT"), market_hours(), seed=3, clock=lambda: now)  # type: ignore[arg-type]
    producer = _Producer()
    fanout = InProcessFanout()
    sub = fanout.subscribe(["AAPL", "MSFT"])
    feed = StockFeed("stock-simulator", producer, fanout, ("AAPL", "MSFT"), Health("s", "source"), clock=lambda: now)
    for step in range(20):
        if market_hours().status(at(when)).open:
            sim.tick(feed, int(now * 1000) + step * 1000)
    got = sub.drain()
    assert bool(got) is trades
    if trades:
        assert {t["symbol"] for t in got} == {"AAPL", "MSFT"}
        assert all(topic == STOCK_TRADES_RAW for topic, _ in producer.sent)


def test_the_simulator_history_is_past_session_minutes_as_a_replay() -> None:
    now = at("2026-12-07T14:35:00+00:00").timestamp()  # Monday 09:35: most of the history is Friday's
    sim = StockSimulatorSource(
        None,  # type: ignore[arg-type]  # history() needs no bus
        InProcessFanout(),
        ("AAPL",),
        market_hours(),
        seed=3,
        history_minutes=30,
        clock=lambda: now,
    )
    producer = _Producer()
    feed = StockFeed(
        "stock-simulator", producer, InProcessFanout(), ("AAPL",), Health("s", "source"), clock=lambda: now
    )
    assert sim.history(feed, at("2026-12-07T14:35:00+00:00")) == 30
    bars = [decode(STOCK_PRICES_RAW, v) for _, v in producer.sent]
    starts = [b.start_ms for b in bars if isinstance(b, StockPrice)]
    assert len(starts) == 30 and all(market_hours().is_open(datetime.fromtimestamp(s / 1000, tz=UTC)) for s in starts)


# -- stock files -------------------------------------------------------------------------------


def test_a_yahoo_daily_file_names_every_refused_row() -> None:
    f = read_stock_file(FIXTURES / "daily-with-bad-rows.csv")
    assert (f.layout, f.timeframe) == ("daily", "1Day") and len(f.bars) == 4
    refused = {(p.line, p.column, p.value) for p in f.rejected}
    assert (4, "High", "203.00") in refused  # high < low
    assert (5, "Close", "n/a") in refused
    assert (7, "Volume", "-5") in refused
    assert {p.reason for p in f.rejected if p.line == 7} == {"volume >= 0"}
    assert datetime.fromtimestamp(f.bars[0][0] / 1000, tz=UTC).isoformat() == "2026-11-27T05:00:00+00:00"


def test_a_minute_file_with_date_and_time_in_new_york() -> None:
    f = read_stock_file(FIXTURES / "minutes-date-time.csv")
    assert (f.layout, f.timeframe, len(f.bars), f.rejected) == ("minute", "1Min", 4, [])
    assert f.bars[0][0] == 1_796_135_400_000  # 09:30 New York


def test_a_five_minute_file_is_refused_whole(tmp_path: Path) -> None:
    from pipeline.candles import CandleFileError

    path = tmp_path / "five.csv"
    path.write_text(
        "Datetime,Open,High,Low,Close,Volume\n"
        + "".join(f"2026-12-01 09:{30 + 5 * i}:00,1,2,0.5,1.5,10\n" for i in range(5))
    )
    with pytest.raises(CandleFileError, match="bars every 5 minutes"):
        read_stock_file(path)


@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is not on this machine")
def test_real_yahoo_and_backtrader_files() -> None:
    nvda = read_stock_file(REALDATA / "backtrader__nvda-2014.txt")
    assert (nvda.timeframe, len(nvda.bars), nvda.rejected) == ("1Day", 252, [])
    minutes = read_stock_file(REALDATA / "backtrader__2006-01-02-volume-min-001.txt")  # the header lacks Time
    assert minutes.timeframe == "1Min" and len(minutes.bars) > 100
