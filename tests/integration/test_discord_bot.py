"""The Discord bot's read commands, refusals, paging and reconnects, against a local Discord.

The desk runs the real ``discord-bot`` stage (discord.py, its gateway and REST calls) against
tests/fakes/discord_gateway.py; the test plays the Discord user. Every state the bot reports is
written first through the storage doors (or published on the bus), so each answer is checked
against numbers known in advance, and every answer is checked against Discord's limits on the
wire. The trading commands are in test_discord_bot_trading.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Literal

import pytest

from pipeline.dead_letters import publish_dead_letter
from pipeline.messages import Alert, encode
from pipeline.topics import ALERTS, ORDERS
from tests.integration.discord_desk import (
    CHANNEL,
    GUILD,
    OTHER_CHANNEL,
    READER,
    STRANGER,
    TOKEN,
    TRADER,
    BotDesk,
    alert_row,
    bot_desk,
    bot_details,
    buttons,
    is_one_private_line,
    order_row,
    png_of,
    text_of,
    trade_row,
    wait_for,
    write_journal,
    write_minute_bars,
    write_model,
    write_orders,
    write_signal,
    write_snapshot,
)

pytestmark = pytest.mark.timeout(180)

NOW = int(time.time() * 1000)
HOUR = 3_600_000


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotDesk]:
    with bot_desk(tmp_path_factory.mktemp("discord-desk")) as d:
        yield d


def test_the_commands_are_registered_in_the_guild_with_their_options(desk: BotDesk) -> None:
    commands = desk.fake.commands
    assert {name for guild, name in commands if guild == GUILD} == {
        "portfolio",
        "orders",
        "signals",
        "journal",
        "alerts",
        "health",
        "chart",
        "close",
        "cancel",
    }
    assert all(guild == GUILD for guild, _ in commands)  # nothing global: other servers never see them
    options = {name: {o["name"]: o for o in c.get("options", [])} for (_, name), c in commands.items()}
    assert options["signals"]["symbol"]["required"] and options["signals"]["symbol"]["autocomplete"]
    assert [c["value"] for c in options["orders"]["status"]["choices"]] == [
        "PENDING",
        "FILLED",
        "CLOSED",
        "CANCELLED",
        "all",
    ]
    assert not options["chart"]["window"].get("required") and options["cancel"]["order_id"]["required"]


def test_portfolio_shows_cash_equity_return_and_each_position(desk: BotDesk) -> None:
    write_snapshot(
        desk.db,
        {
            "cash": 4_000.0,
            "equity": 10_450.0,
            "starting_balance": 10_000.0,
            "exposure_pct": 61.7,
            "realized": 200.0,
            "unrealized": 250.0,
            "fees_paid": 12.5,
            "positions": [
                {
                    "order_id": "B-1",
                    "symbol": "BTCUSDT",
                    "quantity": 0.1,
                    "entry_price": 60_000.0,
                    "price": 62_500.0,
                    "value": 6_250.0,
                    "unrealized": 250.0,
                    "unrealized_pct": 4.1667,
                }
            ],
            "pending": [],
            "market_time": {"BTCUSDT": NOW},
        },
        NOW,
    )
    text = text_of(desk.ask("portfolio"))
    assert "Cash: 4,000.00 USDT" in text and "Equity: 10,450.00 USDT" in text and "Return: +4.50%" in text
    assert "Unrealized: +250.00 USDT" in text
    assert "**BTCUSDT** 0.1 @ 60,000.00 → 62,500.00: +250.00 USDT (+4.17%) · `B-1`" in text
    assert "virtual-exchange stage is not running" in text  # it is not, in this desk: the bot says so


def test_orders_newest_first_filtered_and_paged_with_buttons(desk: BotDesk) -> None:
    write_orders(
        desk.db,
        [
            order_row(f"O-{i:02d}", status="CLOSED" if i % 2 else "FILLED", created_at=NOW - i * 60_000)
            for i in range(30)
        ],
    )
    first = desk.ask("orders")
    text = text_of(first)
    assert "Orders (latest 30)" in text and "Page 1/3" in text
    assert text.index("`O-00`") < text.index("`O-01`") and "`O-12`" not in text
    assert buttons(first) == {"page:previous": True, "page:next": False}

    clicked = desk.fake.click(first, "page:next", user_id=READER, channel_id=CHANNEL)
    second = desk.fake.reply_to(clicked)
    assert second.callback_type == 7  # the message is edited in place
    assert "Page 2/3" in text_of(second) and "`O-12`" in text_of(second) and "`O-00`" not in text_of(second)
    assert buttons(second) == {"page:previous": False, "page:next": False}

    refused = desk.fake.click(second, "page:next", user_id=STRANGER, channel_id=CHANNEL)
    assert is_one_private_line(desk.fake.reply_to(refused))

    closed = text_of(desk.ask("orders", {"status": "CLOSED"}))
    assert "CLOSED orders (latest 15)" in closed and "**FILLED**" not in closed
    bad = desk.ask("orders", {"status": "open"})
    assert is_one_private_line(bad) and "use PENDING, FILLED, CLOSED, CANCELLED or all" in text_of(bad)


def test_signals_with_confidence_and_out_of_sample_accuracy_next_to_the_best_baseline(desk: BotDesk) -> None:
    write_signal(desk.db, "BTCUSDT", "random_forest", NOW - 60_000, "HOLD", 0.4, 0.2)
    write_signal(desk.db, "BTCUSDT", "random_forest", NOW, "BUY", 0.82, 1.9)
    write_signal(desk.db, "BTCUSDT", "svm", NOW, "SELL", 0.61, -1.6)
    baselines = {
        "persistence": {"accuracy": 0.51},
        "always_up": {"accuracy": 0.532},
        "ma_crossover": {"accuracy": 0.49},
        "buy_and_hold": {"profit_pct": 1.0},
    }
    write_model(desk.db, "BTCUSDT", "random_forest", 0.547, baselines)
    text = text_of(desk.ask("signals", {"symbol": "btc"}))
    assert "Signals · BTCUSDT" in text
    assert "**random_forest**: BUY at 82% confidence, expected +1.90%" in text
    assert "out-of-sample accuracy 54.7% vs best baseline always_up 53.2% (v1)" in text
    assert "**svm**: SELL at 61% confidence, expected -1.60%" in text and "· not trained" in text

    unknown = desk.ask("signals", {"symbol": "DOGE"})
    assert is_one_private_line(unknown)
    assert text_of(unknown) == "Unknown symbol 'DOGE': the desk knows BTCUSDT, ETHUSDT."


def test_symbols_autocomplete_for_allowed_users_only(desk: BotDesk) -> None:
    asked = desk.fake.command("signals", {"symbol": "et"}, user_id=READER, channel_id=CHANNEL, kind=4, focused="symbol")
    answer = desk.fake.reply_to(asked)
    assert answer.callback_type == 8 and answer.payload["data"]["choices"] == [{"name": "ETHUSDT", "value": "ETHUSDT"}]
    refused = desk.fake.command(
        "signals", {"symbol": "et"}, user_id=STRANGER, channel_id=CHANNEL, kind=4, focused="symbol"
    )
    assert desk.fake.reply_to(refused).payload["data"]["choices"] == []


def test_journal_net_pnl_win_rate_expectancy_r_and_the_periods_alerts(desk: BotDesk) -> None:
    write_journal(
        desk.db,
        [
            trade_row("J-1", pnl=100.0, exit_time=NOW - 2 * HOUR, stop=50.0),  # risk 50: +2 R
            trade_row("J-2", pnl=-50.0, exit_time=NOW - 3 * HOUR, stop=75.0),  # risk 25: -2 R
            trade_row("J-3", pnl=40.0, exit_time=NOW - 4 * HOUR, stop=None),
            trade_row("J-4", pnl=-500.0, exit_time=NOW - 20 * 24 * HOUR, stop=None),  # outside 7d
        ],
        [
            alert_row("A-1", NOW - HOUR, "three losses in a row, then size up"),
            alert_row("A-2", NOW - 20 * 24 * HOUR, "an old alert"),
        ],
    )
    week = text_of(desk.ask("journal", {"period": "7d"}))
    assert "Journal · the last 7 days" in week
    assert "Net P&L: +90.00 USDT" in week and "Trades: 3" in week and "Win rate: 66.7%" in week
    assert "Expectancy: +30.00 USDT" in week and "Average R: +0.00 R (2 trades with a stop)" in week
    assert "three losses in a row" in week and "an old alert" not in week

    everything = text_of(desk.ask("journal"))
    assert "Journal · all time" in everything and "Net P&L: -410.00 USDT" in everything and "Trades: 4" in everything
    assert "an old alert" in everything

    bad = desk.ask("journal", {"period": "fortnight"})
    assert is_one_private_line(bad) and "Period 'fortnight' not understood: use today, week" in text_of(bad)


def test_alerts_from_the_alerts_topic_and_the_journal(desk: BotDesk) -> None:
    producer = desk.runtime.producer
    priorities: list[tuple[str, Literal["high", "critical"]]] = [("AAPL", "high"), ("MSFT", "critical")]
    for i, (symbol, priority) in enumerate(priorities):
        alert = Alert(
            alert_id=f"S-{i}",
            symbol=symbol,
            alert_type="buy_signal",
            priority=priority,
            timestamp=f"2025-03-15T12:0{i}:00+00:00",
            message=f"{symbol} breaks out",
        )
        producer.produce(ALERTS, encode(alert), key=alert.key())
    producer.produce(ALERTS, b'{"not": "an alert"}', key=b"x")  # skipped, never shown
    assert producer.flush(10) == 0
    wait_for(lambda: bot_details(desk.db).get("stock_alerts_read") == 2, "two alerts read")
    text = text_of(desk.ask("alerts"))
    assert text.index("MSFT breaks out") < text.index("AAPL breaks out")  # newest first
    assert "**critical** buy_signal MSFT" in text and "three losses in a row" in text


def test_health_lists_the_workers_and_the_dead_letters(desk: BotDesk) -> None:
    producer = desk.runtime.producer
    for offset in (5, 6):
        publish_dead_letter(producer, "bad order", topic=ORDERS, value=b"{}", stage="virtual-exchange", offset=offset)
    assert producer.flush(10) == 0
    text = text_of(desk.ask("health"))
    assert "🟢 **discord-bot** (source) lag 0" in text
    assert "Dead letters: 2" in text and "crypto.orders_dlq 2" in text


def test_chart_is_a_png_of_the_window_asked_for(desk: BotDesk) -> None:
    first = (NOW - 600 * 60_000) // 60_000 * 60_000
    write_minute_bars(desk.db, "ETHUSDT", first, 600)
    last = first + 599 * 60_000
    answer = desk.ask("chart", {"symbol": "ETHUSDT", "window": "4h"})
    image, chunks = png_of(answer.files["chart.png"])
    assert image.size == (1000, 560)
    assert chunks["Description"] == (
        f"symbol=ETHUSDT window=4h interval=1m candles=240 first={last - 239 * 60_000} last={last}"
    )
    embed = answer.payload["data"]["embeds"][0]
    assert embed["image"]["url"] == "attachment://chart.png" and embed["title"] == "ETHUSDT · last 4h"

    _, day = png_of(desk.ask("chart", {"symbol": "eth", "window": "1d"}).files["chart.png"])
    assert "interval=5m" in day["Description"] and f"last={last - last % 300_000}" in day["Description"]

    for options, expected in (
        ({"symbol": "ETHUSDT", "window": "two weeks"}, "Window 'two weeks' not understood"),
        ({"symbol": "BTCUSDT"}, "No bars of BTCUSDT yet"),
        ({"symbol": "DOGE"}, "Unknown symbol 'DOGE'"),
    ):
        refused = desk.ask("chart", options)
        assert is_one_private_line(refused) and expected in text_of(refused) and not refused.files


def test_who_may_ask(desk: BotDesk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cases = [
        ({"user": STRANGER}, "not on this bot's list"),
        ({"user": READER, "channel_id": OTHER_CHANNEL}, "not answer in this channel"),
        ({"user": TRADER, "guild_id": GUILD + 1}, "does not answer in this server"),
    ]
    for kwargs, expected in cases:
        answer = desk.ask("signals", {"symbol": "SECRETWORD-in-the-options"}, **kwargs)
        assert is_one_private_line(answer) and expected in text_of(answer)
    dm = desk.fake.command("portfolio", user_id=TRADER, channel_id=OTHER_CHANNEL, guild_id=0)
    assert "direct messages" in text_of(desk.fake.reply_to(dm))
    logged = caplog.text
    assert logged.count("discord-bot: refused /signals from user") == 3 and f"from user {STRANGER}" in logged
    assert "SECRETWORD" not in logged  # who and where, never what they typed


def test_the_bot_resumes_when_discord_drops_the_gateway(desk: BotDesk) -> None:
    resumes = desk.fake.resumes
    desk.fake.drop(4000)
    wait_for(lambda: desk.fake.resumes > resumes and desk.fake.connected(), "the bot to resume")
    assert "Portfolio" in text_of(desk.ask("portfolio"))
    wait_for(lambda: (bot_details(desk.db).get("reconnects") or 0) >= 1, "a reconnect shown")


def test_the_token_appears_in_no_log_status_or_answer(desk: BotDesk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pipeline")
    caplog.set_level(logging.INFO, logger="discord")
    logging.getLogger("discord.http").warning("a request failed with %s", f"Authorization: Bot {TOKEN}")
    desk.fake.drop(4000)
    wait_for(lambda: desk.fake.connected(), "the bot to come back")
    answers = [desk.ask(name) for name in ("portfolio", "health", "journal")]
    assert TOKEN not in caplog.text and "Authorization: Bot ***" in caplog.text
    rows = desk.db.query("SELECT * FROM stage_status")
    assert rows and TOKEN not in repr(rows)
    assert all(TOKEN not in repr(a.payload) for a in answers)
    assert TOKEN not in repr(desk.runtime.config) and desk.runtime.config.redacted()["discord_bot_token"] == "***"


def test_a_token_discord_refuses_stops_the_bot_with_one_line(desk: BotDesk, caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.stages.discord_bot import DiscordBotWorker

    caplog.set_level(logging.INFO)
    worker = desk.worker()
    assert isinstance(worker, DiscordBotWorker)
    wrong = "wrong-" + TOKEN
    refused_before = desk.fake.bad_auth
    bad = DiscordBotWorker(
        wrong, worker.access, worker.desk, None, api_url=desk.fake.api_url, gateway_url=desk.fake.gateway_url
    )
    bad.start()
    try:
        wait_for(lambda: not bad.health.snapshot().running, "the bot with a refused token to stop")
    finally:
        bad.stop()
    assert bad.health.snapshot().last_error == "Discord refused the bot token (DISCORD_BOT_TOKEN); the bot stopped"
    assert desk.fake.bad_auth > refused_before
    assert wrong not in caplog.text and "Discord refused the bot token" in caplog.text
