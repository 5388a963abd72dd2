"""Exchange clients against local fakes that speak Binance's and Bybit's documented wire formats,
and the history source publishing what they fetch to ``raw-trades`` on both buses."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.bus.base import Bus
from pipeline.config import exchange_keys_from_env
from pipeline.errors import BadMessageError, ConfigError, TransientError
from pipeline.journal.fills import Fill, fill_fingerprint
from pipeline.journal.payloads import PARSERS
from pipeline.messages import RawTrade, decode
from pipeline.sources.exchange_api import BinanceClient, BybitClient, client_for
from pipeline.sources.trade_history import ExchangeHistorySource
from pipeline.topics import CATALOG, RAW_TRADES
from tests.fakes.exchanges import (
    BINANCE_DOC_TRADE,
    BYBIT_DOC_EXECUTION,
    DAY_MS,
    FakeBinance,
    FakeBybit,
    binance_trade,
    bybit_execution,
)

KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
NOW_MS = int(time.time() * 1000)
T0 = NOW_MS - 20 * DAY_MS  # the canned history spans the last 20 days


class Sleeps(list[float]):
    """Records the waits a client asks for instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _binance_history() -> list[dict[str, Any]]:
    trades = [
        binance_trade(1000 + 7 * i, T0 + i * 600_000, price=f"{60000 + i}.50", qty="0.00100000", is_buyer=i % 3 != 0)
        for i in range(2_345)
    ]
    trades += [
        binance_trade(
            50_000 + i,
            T0 + 15 * DAY_MS + i * 1000,
            symbol="ETHUSDT",
            price="3100.10",
            qty="0.0500",
            commission="0.00005000",
            commission_asset="ETH",
        )
        for i in range(5)
    ]
    return trades


def _bybit_history() -> list[dict[str, Any]]:
    # 260 executions over ~18 days: three 7-day windows, several cursor pages each.
    items = [
        bybit_execution(
            f"21000000000721{i:05d}",
            T0 + i * 6_000_000,
            side="Buy" if i % 2 else "Sell",
            price=f"{90000 + i}.5",
            qty="0.002",
        )
        for i in range(260)
    ]
    items.append(bybit_execution("2100000000079999999", T0 + 5_000, symbol="ETHUSDT", price="3100.1"))
    return items


@pytest.fixture
def binance() -> Iterator[FakeBinance]:
    with FakeBinance(KEY, SECRET, _binance_history()) as fake:
        yield fake


@pytest.fixture
def bybit() -> Iterator[FakeBybit]:
    with FakeBybit(KEY, SECRET, _bybit_history()) as fake:
        yield fake


def _binance_client(fake: FakeBinance, secret: str = SECRET, **kw: Any) -> BinanceClient:
    return BinanceClient(KEY, secret, base_url=fake.base_url, timeout=5, **kw)


def _bybit_client(fake: FakeBybit, secret: str = SECRET, **kw: Any) -> BybitClient:
    return BybitClient(KEY, secret, base_url=fake.base_url, timeout=5, **kw)


# -- fetching every page ------------------------------------------------------------------------


def test_binance_fetches_all_pages_by_trade_id(binance: FakeBinance) -> None:
    got = _binance_client(binance).fetch("btc/usdt", None)
    expected = [t for t in binance.trades if t["symbol"] == "BTCUSDT"]
    assert got == expected  # raw, untouched, oldest first, every page
    assert len(binance.requests) == 3  # 1000 + 1000 + 345
    first, second, third = (r.params for r in binance.requests)
    assert first["fromId"] == "0" and "startTime" not in first and first["limit"] == "1000"
    assert second["fromId"] == str(expected[999]["id"] + 1) and "startTime" not in second
    assert third["fromId"] == str(expected[1999]["id"] + 1)
    assert all(r.headers["X-MBX-APIKEY"] == KEY for r in binance.requests)


DOCUMENTED = [  # GET /api/v3/myTrades: "the supported combinations of all parameters"
    {"symbol"},
    {"symbol", "orderId"},
    {"symbol", "startTime"},
    {"symbol", "endTime"},
    {"symbol", "fromId"},
    {"symbol", "startTime", "endTime"},
    {"symbol", "orderId", "fromId"},
]


def _combination(params: dict[str, str]) -> set[str]:
    return set(params) - {"limit", "recvWindow", "timestamp", "signature"}


@pytest.mark.parametrize("start_only_day", [False, True], ids=["startTime-open-ended", "startTime-one-day"])
def test_binance_since_gets_every_trade_with_documented_combinations_only(
    binance: FakeBinance, start_only_day: bool
) -> None:
    # What "symbol + startTime" alone returns is not documented; the client must not depend on it.
    binance.start_only_day = start_only_day
    since = T0 + 1_200 * 600_000
    got = _binance_client(binance).fetch("BTCUSDT", since)
    assert got == [t for t in binance.trades if t["symbol"] == "BTCUSDT" and t["time"] >= since]
    assert len(got) == 1_145
    for request in binance.requests:
        p = request.params
        assert _combination(p) in DOCUMENTED, p
        if "startTime" in p and "endTime" in p:
            assert int(p["endTime"]) - int(p["startTime"]) < DAY_MS
    recent, window, *by_id = (r.params for r in binance.requests)
    assert _combination(recent) == {"symbol"}  # the most recent page: all after since, so look back
    assert (window["startTime"], _combination(window)) == (str(since), {"symbol", "startTime", "endTime"})
    assert [p["fromId"] for p in by_id] == [str(got[0]["id"]), str(got[999]["id"] + 1)]


def test_binance_since_reads_a_short_history_in_one_request(binance: FakeBinance) -> None:
    since = T0 + 15 * DAY_MS
    got = _binance_client(binance).fetch("ETHUSDT", since - DAY_MS)
    assert len(got) == 5 and len(binance.requests) == 1
    assert _combination(binance.requests[0].params) == {"symbol"}


def test_binance_since_after_a_quiet_spell_walks_days_until_a_trade(binance: FakeBinance) -> None:
    binance.start_only_day = True
    binance.add(
        *[binance_trade(90_000 + i, T0 + 19 * DAY_MS + i, symbol="SOLUSDT", price="150.0") for i in range(1000)]
    )
    since = T0 + 16 * DAY_MS + 1  # three quiet days, then 1000 trades: a full most-recent page
    got = _binance_client(binance).fetch("SOLUSDT", since)
    assert len(got) == 1000
    windows = [r.params for r in binance.requests if "startTime" in r.params]
    assert [int(w["startTime"]) for w in windows] == [since + k * DAY_MS for k in range(len(windows))]
    assert 3 <= len(windows) <= 4


def test_bybit_walks_seven_day_windows_and_cursor_pages(bybit: FakeBybit) -> None:
    got = _bybit_client(bybit).fetch("BTCUSDT", T0)
    expected = [e for e in bybit.executions if e["symbol"] == "BTCUSDT"]
    assert got == expected  # oldest first, no gaps, no duplicates at window or page edges
    spans = [(int(r.params["startTime"]), int(r.params["endTime"])) for r in bybit.requests]
    assert all(end - start <= 7 * DAY_MS for start, end in spans)
    assert spans[0][0] == T0 and max(end for _, end in spans) >= NOW_MS - 60_000
    cursors = [r.query for r in bybit.requests if "cursor=" in r.query]
    assert cursors and all("%3A" in q for q in cursors)  # the cursor went back exactly as received
    assert all(r.params["category"] == "spot" and r.params["limit"] == "100" for r in bybit.requests)


def test_bybit_without_since_reads_the_default_last_seven_days(bybit: FakeBybit) -> None:
    got = _bybit_client(bybit).fetch("BTCUSDT", None)
    assert got == [
        e for e in bybit.executions if e["symbol"] == "BTCUSDT" and int(e["execTime"]) >= NOW_MS - 7 * DAY_MS
    ]
    assert "startTime" not in bybit.requests[0].params


# -- signatures and credentials ------------------------------------------------------------------


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_wrong_secret_is_a_config_error_without_secret_or_signature(
    venue: str, binance: FakeBinance, bybit: FakeBybit
) -> None:
    wrong = "WRONG" + SECRET[5:]
    fake, client = (
        (binance, _binance_client(binance, wrong)) if venue == "binance" else (bybit, _bybit_client(bybit, wrong))
    )
    with pytest.raises(ConfigError) as err:
        client.fetch("BTCUSDT", None)
    message = str(err.value)
    assert "credentials" in message and "\n" not in message
    sent = fake.requests[0]
    signature = sent.params.get("signature") or sent.headers["X-BAPI-SIGN"]
    assert wrong not in message and signature not in message and KEY not in message
    assert len(fake.requests) == 1  # a rejected signature is not retried
    assert wrong not in repr(client) and KEY not in repr(client)


def test_the_right_secret_passes_the_same_check(binance: FakeBinance, bybit: FakeBybit) -> None:
    assert _binance_client(binance).fetch("ETHUSDT", None)
    assert _bybit_client(bybit).fetch("ETHUSDT", T0)


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_unknown_key_and_skewed_clock_are_config_errors(venue: str, binance: FakeBinance, bybit: FakeBybit) -> None:
    make: Callable[..., Any] = BinanceClient if venue == "binance" else BybitClient
    url = binance.base_url if venue == "binance" else bybit.base_url
    with pytest.raises(ConfigError, match="credentials"):
        make("not-a-key", SECRET, url).fetch("BTCUSDT", None)
    with pytest.raises(ConfigError, match="clock"):
        make(KEY, SECRET, url, 5, lambda: time.time() - 3600).fetch("BTCUSDT", None)


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_rate_limit_and_server_errors_are_retried(venue: str, binance: FakeBinance, bybit: FakeBybit) -> None:
    sleeps = Sleeps()
    if venue == "binance":
        fake: FakeBinance | FakeBybit = binance
        client: BinanceClient | BybitClient = _binance_client(binance, sleep=sleeps, backoff_s=0.01)
    else:
        fake, client = bybit, _bybit_client(bybit, sleep=sleeps, backoff_s=0.01)
    fake.fail_next(1, 429, retry_after=3)
    fake.fail_next(1, 500)
    got = client.fetch("ETHUSDT", T0)
    assert [t["symbol"] for t in got] == ["ETHUSDT"] * len(got) and got
    assert [r.path for r in fake.requests][:3] == [fake.PATH] * 3
    assert len(sleeps) == 2 and sleeps[0] >= 3  # Retry-After honoured, then backoff
    assert 0 < sleeps[1] < 3


def test_bybit_rate_limit_code_waits_for_the_reset_time(bybit: FakeBybit) -> None:
    sleeps = Sleeps()
    bybit.rate_limit_next(2, reset_in_ms=1_500)
    got = _bybit_client(bybit, sleep=sleeps, backoff_s=0.01).fetch("ETHUSDT", T0)
    assert len(got) == 1 and len(sleeps) == 2 and all(1.0 <= s <= 1.6 for s in sleeps)


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_persistent_failure_becomes_transient_error_after_a_few_attempts(
    venue: str, binance: FakeBinance, bybit: FakeBybit
) -> None:
    sleeps = Sleeps()
    fake: FakeBinance | FakeBybit = binance if venue == "binance" else bybit
    make = _binance_client if venue == "binance" else _bybit_client
    fake.fail_next(10, 500)
    with pytest.raises(TransientError, match="HTTP 500") as err:
        make(fake, sleep=sleeps, max_attempts=3, backoff_s=0.5).fetch("BTCUSDT", None)  # type: ignore[arg-type]  # make and fake go by venue
    assert len(fake.requests) == 3 and sleeps == [0.5, 1.0]  # exponential backoff
    assert SECRET not in str(err.value)


def test_long_retry_after_is_not_slept_inside_fetch(binance: FakeBinance) -> None:
    sleeps = Sleeps()
    binance.fail_next(1, 418, retry_after=7200)  # an IP ban: come back next interval instead
    with pytest.raises(TransientError, match="retry after 7200"):
        _binance_client(binance, sleep=sleeps).fetch("BTCUSDT", None)
    assert sleeps == [] and len(binance.requests) == 1


def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = BinanceClient(KEY, SECRET, base_url=f"http://127.0.0.1:{port}", timeout=2, max_attempts=2, sleep=Sleeps())
    with pytest.raises(TransientError, match="refused"):
        client.fetch("BTCUSDT", None)


# -- parsers -------------------------------------------------------------------------------------


def test_binance_parser_reads_the_documented_trade() -> None:
    fill = PARSERS["binance-api"](BINANCE_DOC_TRADE)
    assert fill == Fill(
        symbol="BNBBTC",
        side="BUY",
        price=4.000001,
        quantity=12.0,
        time=1499865549590,
        fee=10.1,
        fee_asset="BNB",
        exchange_id="28457",
    )
    assert PARSERS["binance-api"]({**BINANCE_DOC_TRADE, "isBuyer": False}).side == "SELL"


def test_bybit_parser_reads_an_execution_and_either_fee_currency_field() -> None:
    fill = PARSERS["bybit-api"](BYBIT_DOC_EXECUTION)
    assert fill == Fill(
        symbol="BTCUSDT",
        side="BUY",
        price=92150.5,
        quantity=0.002,
        time=1731767702000,
        fee=0.00012,
        fee_asset="BTC",
        exchange_id="2100000000072181418",
    )
    old = bybit_execution("7", 1731767702000, side="Sell", fee_currency="USDT", fee_field="execFeeCurrency")
    assert PARSERS["bybit-api"](old).fee_asset == "USDT" and PARSERS["bybit-api"](old).side == "SELL"
    assert PARSERS["bybit-api"](bybit_execution("8", 1731767702000, fee_currency=None)).fee_asset is None


def test_parsers_name_every_bad_field() -> None:
    with pytest.raises(BadMessageError) as err:
        PARSERS["binance-api"]({**BINANCE_DOC_TRADE, "price": "abc", "qty": "0", "isBuyer": "yes"})
    assert {v.field for v in err.value.violations} == {"price", "qty", "isBuyer"}
    with pytest.raises(BadMessageError) as err:
        PARSERS["bybit-api"]({**BYBIT_DOC_EXECUTION, "execType": "Funding"})
    assert [v.field for v in err.value.violations] == ["execType"]
    with pytest.raises(BadMessageError) as err:
        PARSERS["bybit-api"]({k: v for k, v in BYBIT_DOC_EXECUTION.items() if k != "execTime"} | {"side": "b"})
    assert {v.field for v in err.value.violations} == {"execTime", "side"}


# -- configuration -------------------------------------------------------------------------------


def test_exchange_keys_are_off_by_default_and_their_clients_never_show_secrets() -> None:
    assert exchange_keys_from_env({}) == ()
    keys = exchange_keys_from_env(
        {
            "BINANCE_API_KEY": KEY,
            "BINANCE_API_SECRET": SECRET,
            "BYBIT_API_KEY": "bk",
            "BYBIT_API_SECRET": "bs",
            "BYBIT_BASE_URL": "http://127.0.0.1:9/",
        }
    )
    assert all(SECRET not in repr(k) and KEY not in repr(k) for k in keys)
    clients = [client_for(k.venue, k.api_key, k.api_secret, k.base_url) for k in keys]
    assert [(c.venue, c.format) for c in clients] == [("binance", "binance-api"), ("bybit", "bybit-api")]
    assert [c.base_url for c in clients] == ["https://api.binance.com", "http://127.0.0.1:9"]  # type: ignore[attr-defined]  # both clients have one
    assert all(SECRET not in repr(c) and KEY not in repr(c) and "bs" not in repr(c) for c in clients)
    with pytest.raises(ConfigError, match="BYBIT_API_SECRET"):
        exchange_keys_from_env({"BYBIT_API_KEY": "bk"})


# -- the source on the bus -----------------------------------------------------------------------


def _read_raw_trades(bus: Bus, group: str, user_id: str, expected: int, timeout: float = 60.0) -> list[RawTrade]:
    consumer = bus.consumer(group, [RAW_TRADES])
    got: list[RawTrade] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(got) < expected:
            for record in consumer.poll(500, 0.5):
                if record.key == user_id.encode():
                    got.append(decode(RAW_TRADES, record.value or b""))  # type: ignore[arg-type]  # a RawTrade
        # anything extra would show up within a moment
        for record in consumer.poll(500, 1.0):
            if record.key == user_id.encode():
                got.append(decode(RAW_TRADES, record.value or b""))  # type: ignore[arg-type]  # a RawTrade
    finally:
        consumer.close()
    return got


def test_history_source_publishes_raw_trades_with_stable_ids(bus: Bus, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    user = f"trader-{uuid.uuid4().hex[:12]}"
    since = T0 + 2_000 * 600_000
    with FakeBinance(KEY, SECRET, _binance_history()) as fake:
        client = _binance_client(fake)
        source = ExchangeHistorySource(
            client, bus.producer(), user_id=user, symbols=["BTC/USDT", "ETHUSDT"], since_ms=since
        )
        wanted = [t for t in fake.trades if t["time"] >= since]
        assert source.poll_once() == len(wanted) == 345 + 5
        assert source.poll_once() == 0  # nothing new: the cursor moved past what was published
        fake.add(binance_trade(999_999, NOW_MS, price="61000.00", is_buyer=False))
        assert source.poll_once() == 1
        again = ExchangeHistorySource(
            client, bus.producer(), user_id=user, symbols=["BTCUSDT", "ETHUSDT"], since_ms=since
        )
        assert again.poll_once() == len(wanted) + 1
    health = source.health.snapshot()
    assert health.produced == len(wanted) + 1 and health.errors == 0

    got = _read_raw_trades(bus, group_name("raw"), user, 2 * (len(wanted) + 1))
    assert len(got) == 2 * (len(wanted) + 1)
    first, second = got[: len(got) // 2], got[len(got) // 2 :]
    by_id = {m.raw_id: m for m in first}
    assert len(by_id) == len(first) and set(by_id) == {m.raw_id for m in second}  # the same stable ids
    for m in first:
        assert (m.user_id, m.source, m.format) == (user, "binance", "binance-api")
        fill = PARSERS["binance-api"](m.payload)  # type: ignore[arg-type]  # an API payload is a dict
        assert m.raw_id == fill_fingerprint(user, fill, 0, venue="binance")
    payloads = sorted((m.payload for m in first), key=lambda p: p["id"])  # type: ignore[index]  # API payloads are dicts
    assert payloads == sorted([*wanted, fake.trades[-1]], key=lambda p: p["id"])


def test_history_source_counts_transient_errors_and_recovers(bus: Bus, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    user = f"trader-{uuid.uuid4().hex[:12]}"
    with FakeBybit(KEY, SECRET, _bybit_history()) as fake:
        fake.fail_next(4, 500)  # two polls' worth of attempts fail, then the exchange is back
        client = _bybit_client(fake, max_attempts=2, backoff_s=0.01)
        source = ExchangeHistorySource(
            client, bus.producer(), user_id=user, symbols=["ETHUSDT"], interval_s=0.05, since_ms=T0
        )
        source.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and source.health.snapshot().produced < 1:
                time.sleep(0.05)
        finally:
            source.stop()
    health = source.health.snapshot()
    assert health.produced == 1 and health.errors == 2 and not health.running
    assert health.last_error is not None and "HTTP 500" in health.last_error and "\n" not in health.last_error
    got = _read_raw_trades(bus, group_name("raw"), user, 1)
    assert [(m.source, m.format, m.payload) for m in got] == [("bybit", "bybit-api", fake.executions[-1])]
