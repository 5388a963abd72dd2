"""Exchange sync through ccxt against a local server that speaks Bybit's v5 wire format: every
execution once over 7-day windows and cursor pages, rate limits retried, rejected keys refused
without the secret, the unified trades parsed into fills, and a restart resuming from the ledger."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.bus.base import Bus
from pipeline.errors import ConfigError
from pipeline.journal.fills import Fill
from pipeline.journal.payloads import parse_ccxt_trade
from pipeline.messages import RawTrade, decode
from pipeline.sources.ccxt_history import CcxtClient
from pipeline.sources.trade_history import ExchangeHistorySource
from pipeline.stages.normalizer import Normalizer
from pipeline.topics import CATALOG, RAW_TRADES
from storage import ledger
from storage.db import Database
from tests.fakes.exchanges import DAY_MS, FakeBybit, bybit_execution

KEY = "ccxt-key-4f9a2c71b3e84d5f"
SECRET = "ccxt-secret-0d6b1e2f9a7c4b3e8f5a"
NOW_MS = int(time.time() * 1000)
T0 = NOW_MS - 20 * DAY_MS


def _history() -> list[dict[str, Any]]:
    return [
        bybit_execution(
            f"31000000000721{i:05d}",
            T0 + i * 6_000_000,
            side="Buy" if i % 2 else "Sell",
            price=f"{90000 + i}.5",
            qty="0.002",
            fee_currency="BTC" if i % 2 else "USDT",  # a spot fee is charged in the asset received
        )
        for i in range(260)
    ]


@pytest.fixture
def fake() -> Iterator[FakeBybit]:
    with FakeBybit(KEY, SECRET, _history()) as server:
        yield server


def client(fake: FakeBybit, secret: str = SECRET) -> CcxtClient:
    return CcxtClient("bybit", KEY, secret, base_url=fake.base_url, sleep=lambda s: None, backoff_s=0.0)


def test_every_execution_once_over_seven_day_windows_and_cursor_pages(fake: FakeBybit) -> None:
    trades = client(fake).fetch("BTCUSDT", T0)
    assert len(trades) == 260 and len({t["id"] for t in trades}) == 260
    assert [t["timestamp"] for t in trades] == sorted(t["timestamp"] for t in trades)
    listed = [r.params for r in fake.requests if r.path == "/v5/execution/list"]
    spans = [int(p["endTime"]) - int(p["startTime"]) for p in listed if "endTime" in p]
    assert spans and max(spans) < 7 * DAY_MS  # each window within what Bybit accepts
    assert any("cursor" in p for p in listed)  # and pages inside a window by cursor
    fill = parse_ccxt_trade(trades[0])
    first = fake.executions[0]
    assert fill == Fill(
        "BTCUSDT",
        "SELL",
        float(first["execPrice"]),
        0.002,
        int(first["execTime"]),
        float(first["execFee"]),
        first["feeCurrency"],
        first["execId"],
    )


def test_rate_limits_are_waited_and_retried(fake: FakeBybit) -> None:
    fake.rate_limit_next(2)
    assert len(client(fake).fetch("BTCUSDT", NOW_MS - 3 * DAY_MS)) > 0


def test_rejected_keys_are_a_config_error_without_the_secret(fake: FakeBybit) -> None:
    wrong = "a-wrong-secret-that-must-not-show"
    with pytest.raises(ConfigError) as info:
        client(fake, secret=wrong).fetch("BTCUSDT", T0)
    assert wrong not in str(info.value) and "credentials" in str(info.value)


def test_an_unknown_exchange_or_market_is_a_config_error(fake: FakeBybit) -> None:
    with pytest.raises(ConfigError, match="not an exchange ccxt knows"):
        CcxtClient("no-such-exchange", KEY, SECRET)
    with pytest.raises(ConfigError, match="no market DOGEUSDT"):
        client(fake).fetch("DOGEUSDT", T0)


def test_the_sync_publishes_each_trade_once_and_resumes_from_the_ledger_after_a_restart(
    fake: FakeBybit, bus: Bus, tmp_path: Path, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    user = f"ccxt-{uuid.uuid4().hex[:8]}"

    def source() -> ExchangeHistorySource:
        return ExchangeHistorySource(
            client(fake),
            bus.producer(),
            user_id=user,
            symbols=["BTCUSDT"],
            since_ms=T0,
            resume=lambda symbol, venue: ledger.last_fill_time_from(db, user, symbol, venue),
        )

    first = source()
    assert first.poll_once() == 260
    consumer = bus.consumer(group_name("raw"), [RAW_TRADES])
    mine: list[RawTrade] = []
    deadline = time.monotonic() + 60
    while len(mine) < 260 and time.monotonic() < deadline:
        for record in consumer.poll(500, 1.0):
            if record.key == user.encode():
                message = decode(RAW_TRADES, record.value or b"")
                assert isinstance(message, RawTrade)
                mine.append(message)
    consumer.close()
    assert len(mine) == 260 and {r.format for r in mine} == {"ccxt"} and {r.source for r in mine} == {"bybit"}
    stage = Normalizer(db)
    stage.process_batch([stage.prepare(r) for r in mine])
    # a restart: the new source starts from the newest stored fill, not from T0
    fake.add(bybit_execution("3100000000079999999", NOW_MS - 60_000, price="95000.5", qty="0.002"))
    fake.requests.clear()
    again = source()
    assert again.poll_once() == 2  # the newest stored fill (kept once by its id downstream) and the new one
    starts = [int(r.params["startTime"]) for r in fake.requests if "startTime" in r.params]
    assert min(starts) == int(fake.executions[259]["execTime"])
    db.close()


# -- an exchange whose ccxt client does not paginate itself: Kraken ------------------------------

KRAKEN_SECRET = "a3Jha2VuLXNlY3JldC1mb3ItdGhlLXRlc3Rz"  # base64, as Kraken issues secrets


def test_kraken_through_ccxts_generic_walk_gets_every_trade_of_the_pair(tmp_path: Path) -> None:
    from tests.fakes.exchanges import FakeKraken, kraken_trade

    start_s = (NOW_MS - 10 * DAY_MS) / 1000
    trades = [
        kraken_trade(f"T{i:05d}-ABCDE-FGHIJ", start_s + i * 3600.5, side="buy" if i % 2 else "sell")
        for i in range(120)  # three pages of Kraken's 50, newest first
    ]
    with FakeKraken(KEY, KRAKEN_SECRET, trades) as kraken:
        ccxt_client = CcxtClient(
            "kraken", KEY, KRAKEN_SECRET, base_url=kraken.base_url, sleep=lambda s: None, rate_limit_ms=1
        )
        assert not ccxt_client.own_pagination
        got = ccxt_client.fetch("BTCUSD", NOW_MS - 11 * DAY_MS)
        assert len(got) == 120 and len({t["id"] for t in got}) == 120
        private = [r for r in kraken.requests if r.path == "/0/private/TradesHistory"]
        assert 3 <= len(private) <= 5 and all("end" in r.params for r in private[1:])  # walked back by ``end``
        fill = parse_ccxt_trade(got[0])
        assert (fill.symbol, fill.side, fill.price, fill.quantity, fill.exchange_id) == (
            "BTCUSD",
            "SELL",
            30010.0,
            0.02,
            "T00000-ABCDE-FGHIJ",
        )
        assert fill.time == int(start_s * 1000)
        later = ccxt_client.fetch("BTCUSD", int((start_s + 100 * 3600.5) * 1000))
        assert [t["id"] for t in later] == [t["txid"] for t in trades[100:]]


def test_kraken_refuses_a_wrong_secret_and_it_is_never_shown() -> None:
    from tests.fakes.exchanges import FakeKraken

    wrong = "d3Jvbmctc2VjcmV0LXRoYXQtbXVzdC1ub3Qtc2hvdw=="
    with FakeKraken(KEY, KRAKEN_SECRET) as kraken:
        with pytest.raises(ConfigError) as info:
            kraken_client = CcxtClient(
                "kraken", KEY, wrong, base_url=kraken.base_url, sleep=lambda s: None, rate_limit_ms=1
            )
            kraken_client.fetch("BTCUSD", NOW_MS)
        assert wrong not in str(info.value)
