"""/close and /cancel through the Discord bot, against a running virtual exchange.

The desk runs market-store, virtual-exchange and discord-bot on the embedded bus; the test
publishes the ticks and the BUY orders, so every price is known. A close or a cancel happens only
after the trader who asked presses Confirm: a reader, another trader, the Cancel button and a
confirmation that comes too late change nothing. Once confirmed, the bot publishes the same manual
order as the Portfolio page's button (``MAN-<market time>-<symbol>-X``) and the exchange closes
the position with exit reason ``manual``, or cancels the pending order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pipeline.messages import MarketData, Order, OrderType, RiskManagement, TriggerSignal, encode
from pipeline.notify import discord_bot
from pipeline.topics import MARKET_DATA
from pipeline.trading.manual import publish
from storage import orders
from tests.integration.discord_desk import (
    CHANNEL,
    READER,
    TRADER,
    TRADER_BY_ROLE,
    TRADER_ROLE,
    BotDesk,
    bot_desk,
    bot_details,
    buttons,
    is_one_private_line,
    text_of,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)

SLIP = 5 / 10_000


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotDesk]:
    with bot_desk(tmp_path_factory.mktemp("discord-trading"), "market-store,virtual-exchange,discord-bot") as d:
        yield d


def now_ms() -> int:
    return int(time.time() * 1000)


def tick(desk: BotDesk, symbol: str, price: float, ts: int) -> None:
    md = MarketData(
        symbol=symbol, timestamp=ts, price=price, open=price, high=price, low=price, volume=1.0, price_change_pct=0.0
    )
    desk.runtime.producer.produce(MARKET_DATA, encode(md), key=md.key())
    assert desk.runtime.producer.flush(10) == 0


def buy(order_id: str, ts: int, *, price: float, quantity: float, order_type: OrderType = "MARKET") -> Order:
    return Order(
        order_id=order_id,
        symbol="BTCUSDT",
        timestamp=ts,
        action="BUY",
        order_type=order_type,
        quantity=quantity,
        price=price,
        total_value=quantity * price,
        status="PENDING",
        strategy="test",
        trigger_signal=TriggerSignal(model="random_forest", confidence=0.9, expected_change_pct=2.0),
        risk_management=RiskManagement(stop_loss=price * 0.8, take_profit=price * 1.2),
        metadata={"account": "paper"},
    )


def manual_orders(desk: BotDesk) -> list[str]:
    return [o for o in orders.orders(desk.db)["order_id"] if o.startswith("MAN-")]


def state(desk: BotDesk) -> dict:
    return orders.portfolio_state(desk.db) or {}


@pytest.fixture(scope="module")
def position(desk: BotDesk) -> int:
    """An open BTCUSDT position (ORD-D-1), filled at 101; returns the market time of that fill."""
    exchange = desk.worker("virtual-exchange")
    deadline = time.monotonic() + 30
    while exchange.health.snapshot().processed == 0:  # the exchange reads from the end: tick until it reads
        assert time.monotonic() < deadline, "the virtual exchange never read a tick"
        tick(desk, "BTCUSDT", 100.0, now_ms())
        time.sleep(0.2)
    t0 = now_ms()
    publish(desk.runtime.producer, buy("ORD-D-1", t0, price=100.0, quantity=0.5))
    tick(desk, "BTCUSDT", 101.0, t0 + 1)
    wait_for(lambda: [p for p in state(desk).get("positions", []) if p["order_id"] == "ORD-D-1"], "the position")
    return t0 + 1


def test_only_traders_may_close_and_a_reader_changes_nothing(desk: BotDesk, position: int) -> None:
    refused = desk.ask("close", {"symbol": "BTCUSDT"}, user=READER)
    assert is_one_private_line(refused) and "Only traders may close positions" in text_of(refused)
    unknown = desk.ask("close", {"symbol": "ETHUSDT"}, user=TRADER)
    assert is_one_private_line(unknown) and text_of(unknown) == "No open position in ETHUSDT: open positions: BTCUSDT."
    assert manual_orders(desk) == []


def test_a_close_waits_for_the_askers_confirmation(
    desk: BotDesk, position: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = desk.ask("close", {"symbol": "btc"}, user=TRADER)
    assert prompt.payload["data"]["flags"] & 64  # only the trader sees the prompt
    assert "Close BTCUSDT at the market?" in text_of(prompt) and "SELL 0.5 BTCUSDT" in text_of(prompt)
    assert "`ORD-D-1`" in text_of(prompt) and buttons(prompt) == {"trade:confirm": False, "trade:dismiss": False}

    other = desk.fake.click(prompt, "trade:confirm", user_id=TRADER_BY_ROLE, roles=(TRADER_ROLE,), channel_id=CHANNEL)
    assert text_of(desk.fake.reply_to(other)) == "Only the trader who asked can confirm this."
    dismissed = desk.fake.click(prompt, "trade:dismiss", user_id=TRADER, channel_id=CHANNEL)
    answer = desk.fake.reply_to(dismissed)
    assert answer.callback_type == 7 and text_of(answer) == "Not sent." and buttons(answer) == {}

    monkeypatch.setattr(discord_bot, "CONFIRM_S", 0.3)
    late = desk.ask("close", {"symbol": "BTCUSDT"}, user=TRADER)
    expired = desk.fake.reply_to(late.interaction_id, nth=2)  # the bot edits its prompt when time is up
    assert expired.kind == "edit" and text_of(expired) == "Not sent: no confirmation within 0.3 s."
    assert buttons(expired) == {}
    clicked = desk.fake.click(late, "trade:confirm", user_id=TRADER, channel_id=CHANNEL)
    time.sleep(0.5)  # a button of a prompt that expired is not handled; give the bot time to misbehave
    assert desk.fake.answers(clicked) == []
    assert manual_orders(desk) == []


def test_a_confirmed_close_is_the_portfolio_pages_manual_order(desk: BotDesk, position: int) -> None:
    prompt = desk.ask("close", {"symbol": "BTCUSDT"}, user=TRADER)
    confirmed = desk.fake.click(prompt, "trade:confirm", user_id=TRADER, channel_id=CHANNEL)
    answer = desk.fake.reply_to(confirmed)
    order_id = f"MAN-{position}-BTCUSDT-X"  # made at the market time the exchange had seen, as the page does
    assert answer.callback_type == 7 and buttons(answer) == {}
    assert text_of(answer) == f"Close of BTCUSDT sent ({order_id}): it fills at the next tick."

    tick(desk, "BTCUSDT", 102.0, position + 1)
    wait_for(lambda: not state(desk).get("positions"), "the position to close")
    history = orders.orders(desk.db).set_index("order_id")
    closed = history.loc["ORD-D-1"]
    assert closed["status"] == "CLOSED" and closed["exit_reason"] == "manual"
    assert closed["exit_price"] == pytest.approx(102.0 * (1 - SLIP))
    sell = history.loc[order_id]
    assert (sell["strategy"], sell["status"], sell["closes"]) == ("manual", "FILLED", "ORD-D-1")
    assert manual_orders(desk) == [order_id]

    again = desk.ask("close", {"symbol": "BTCUSDT"}, user=TRADER)
    assert text_of(again) == "No open position in BTCUSDT: there is no open position."


def test_a_confirmed_cancel_cancels_the_pending_order(desk: BotDesk, position: int) -> None:
    publish(desk.runtime.producer, buy("ORD-D-2", now_ms(), price=50.0, quantity=1.0, order_type="LIMIT"))
    wait_for(lambda: [o for o in state(desk).get("pending", []) if o["order_id"] == "ORD-D-2"], "the pending order")

    unknown = desk.ask("cancel", {"order_id": "ORD-NOPE"}, user=TRADER)
    assert text_of(unknown) == "No pending order 'ORD-NOPE': the pending orders are ORD-D-2."
    refused = desk.ask("cancel", {"order_id": "ORD-D-2"}, user=READER)
    assert "Only traders" in text_of(refused)

    prompt = desk.ask("cancel", {"order_id": "ORD-D-2"}, user=TRADER_BY_ROLE, roles=(TRADER_ROLE,))
    assert "Cancel ORD-D-2?" in text_of(prompt) and "BUY 1 BTCUSDT @ 50.0000 (LIMIT, test)" in text_of(prompt)
    confirmed = desk.fake.click(
        prompt, "trade:confirm", user_id=TRADER_BY_ROLE, roles=(TRADER_ROLE,), channel_id=CHANNEL
    )
    answer = desk.fake.reply_to(confirmed)
    assert text_of(answer) == "Cancel of ORD-D-2 sent: the exchange cancels it if it is still pending."

    def cancelled() -> bool:
        row = orders.orders(desk.db).set_index("order_id").loc["ORD-D-2"]
        return row["status"] == "CANCELLED" and row["reason"] == "cancelled by the trader"

    wait_for(cancelled, "the order to be cancelled")
    assert not state(desk).get("pending")
    # the close of the test before and this cancel, and nothing for the refused, dismissed or late ones
    wait_for(lambda: bot_details(desk.db).get("orders_published") == 2, "the bot's count of orders published")
