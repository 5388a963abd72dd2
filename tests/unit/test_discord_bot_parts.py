"""The Discord bot's pure parts: what it accepts, who may ask, answers within Discord's limits, charts.

The bot itself, against a local Discord, is in tests/integration/test_discord_bot.py.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from PIL import Image, PngImagePlugin

from pipeline.notify import bot_replies as r
from pipeline.notify.bot_access import Access, Caller, ids_of, refusal
from pipeline.notify.bot_inputs import (
    BotInputError,
    order_id_of,
    period_of,
    status_of,
    symbol_of,
    window_of,
)
from pipeline.notify.chart import MAX_CANDLES, candles, interval_for, render

NOW = int(datetime(2025, 3, 15, 12, 30, tzinfo=UTC).timestamp() * 1000)
DAY = 86_400_000
KNOWN = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


# -- what it accepts


def test_symbols_in_any_case_or_by_base_asset_and_an_unknown_one_lists_the_known() -> None:
    assert symbol_of(" btcusdt ", KNOWN) == "BTCUSDT"
    assert symbol_of("eth", KNOWN) == "ETHUSDT"
    with pytest.raises(BotInputError) as exc:
        symbol_of("DOGE", KNOWN)
    assert str(exc.value) == "Unknown symbol 'DOGE': the desk knows BTCUSDT, ETHUSDT, SOLUSDT."


def test_a_hostile_argument_is_cut_and_cannot_mention_anyone() -> None:
    with pytest.raises(BotInputError) as exc:
        symbol_of("@everyone " + "x" * 500, KNOWN)
    text = str(exc.value)
    assert "@" not in text and len(text) < 200 and "\n" not in text


def test_periods() -> None:
    assert period_of(None, NOW) == r_period("all time", None, None)
    today = period_of("today", NOW)
    assert today.since_ms == int(datetime(2025, 3, 15, tzinfo=UTC).timestamp() * 1000) and today.until_ms is None
    assert period_of("7d", NOW).since_ms == NOW - 7 * DAY
    assert period_of("week", NOW).since_ms == NOW - 7 * DAY
    assert period_of("ytd", NOW).since_ms == int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
    span = period_of("2025-01-01..2025-01-31", NOW)
    assert span.since_ms == int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert span.until_ms == int(datetime(2025, 2, 1, tzinfo=UTC).timestamp() * 1000)  # the last day included
    assert span.label == "2025-01-01 to 2025-01-31"


def r_period(label: str, since: int | None, until: int | None) -> object:
    from pipeline.notify.bot_inputs import Period

    return Period(label, since, until)


@pytest.mark.parametrize("bad", ["fortnight", "0d", "2025-13-01", "2025-02-01..2025-01-01", "-3d"])
def test_a_period_it_cannot_parse_says_what_it_accepts(bad: str) -> None:
    with pytest.raises(BotInputError) as exc:
        period_of(bad, NOW)
    text = str(exc.value)
    assert text.startswith("Period ") and "7d" in text and "2025-01-01..2025-01-31" in text and "\n" not in text


def test_windows_and_their_limits() -> None:
    assert window_of(None) == (4 * 3_600_000, "4h")
    assert window_of("90m") == (90 * 60_000, "90m")
    assert window_of("3d") == (3 * DAY, "3d")
    for bad in ("10m", "8d", "week", ""):
        with pytest.raises(BotInputError) as exc:
            window_of(bad) if bad else window_of(" ")
        assert "90m, 4h or 3d" in str(exc.value)


def test_statuses_and_order_ids() -> None:
    assert status_of(None) is None and status_of("all") is None and status_of("filled") == "FILLED"
    with pytest.raises(BotInputError, match="use PENDING, FILLED, CLOSED, CANCELLED or all"):
        status_of("open")
    assert order_id_of(" B-1 ", ["B-1", "B-2"]) == "B-1"
    with pytest.raises(BotInputError, match="pending orders are B-1, B-2"):
        order_id_of("B-9", ["B-1", "B-2"])
    with pytest.raises(BotInputError, match="there is no pending order"):
        order_id_of("B-9", [])


# -- who may ask

ACCESS = Access(
    guild_id=10, channel_ids=frozenset({20, 21}), user_ids=frozenset({30, 31}), trader_ids=frozenset({40, 50})
)


def caller(user: int, *, roles: tuple[int, ...] = (), guild: int | None = 10, channel: int | None = 20) -> Caller:
    return Caller(user, frozenset(roles), guild, channel)


def test_readers_traders_and_everyone_else() -> None:
    assert refusal(ACCESS, caller(30), trading=False) is None
    assert refusal(ACCESS, caller(40), trading=False) is None  # a trader may read
    assert refusal(ACCESS, caller(40), trading=True) is None
    assert refusal(ACCESS, caller(99, roles=(50,)), trading=True) is None  # a trader by role
    assert refusal(ACCESS, caller(99, roles=(31,)), trading=False) is None  # a reader by role
    assert "Only traders" in (refusal(ACCESS, caller(30), trading=True) or "")
    assert "not on this bot's list" in (refusal(ACCESS, caller(99), trading=False) or "")
    assert "this channel" in (refusal(ACCESS, caller(40, channel=99), trading=True) or "")
    assert "this server" in (refusal(ACCESS, caller(40, guild=11), trading=False) or "")
    assert "direct messages" in (refusal(ACCESS, caller(40, guild=None, channel=None), trading=False) or "")


def test_ids_from_settings_name_the_bad_one() -> None:
    assert ids_of(["1", " 2 ", ""]) == frozenset({1, 2})
    with pytest.raises(ValueError, match="'abc' is not a Discord id"):
        ids_of(["1", "abc"])


# -- Discord's limits


def test_pages_stay_within_discords_limits_whatever_the_desk_holds() -> None:
    huge = ["x" * 5000] * 100  # lines longer than any field, more than any page
    pages = r.paged("T" * 1000, huge, head=[r.Field("n" * 999, "v" * 9999)] * 40, intro="i" * 9000, footer="f" * 3000)
    assert len(pages) == 100 // r.PAGE_LINES + 1
    for page in pages:
        assert len(page.title) <= r.TITLE_MAX and len(page.description) <= r.DESCRIPTION_MAX
        assert len(page.fields) <= r.FIELDS_MAX and len(page.footer) <= r.FOOTER_MAX
        assert all(len(f.name) <= r.FIELD_NAME_MAX and len(f.value) <= r.FIELD_VALUE_MAX for f in page.fields)
        assert page.size() <= r.EMBED_MAX
    assert pages[-1].footer.endswith(f"Page {len(pages)}/{len(pages)}")
    assert len(r.one_line("y" * 5000).text) == r.CONTENT_MAX


def test_a_short_list_is_one_page_without_numbering() -> None:
    (page,) = r.paged("Orders", ["a", "b"], footer="as of now")
    assert page.description == "a\nb" and page.footer == "as of now"


def test_the_best_baseline_is_the_most_accurate() -> None:
    baselines = {"persistence": {"accuracy": 0.51}, "always_up": {"accuracy": 0.53}, "buy_and_hold": {"profit_pct": 2}}
    assert r.best_baseline(baselines) == ("always_up", 0.53)
    assert r.best_baseline({}) is None


# -- charts


def minute_bars(n: int, start: int = 1_735_689_600_000) -> list[tuple[int, float, float, float, float, float]]:
    out = []
    price = 100.0
    for i in range(n):
        close = price * (1.001 if i % 3 else 0.998)
        out.append((start + i * 60_000, price, max(price, close) + 0.1, min(price, close) - 0.1, close, 1.0 + i % 5))
        price = close
    return out


def test_candles_group_minutes_without_inventing_any() -> None:
    bars = minute_bars(12)
    five = candles(bars, 5)
    assert [c[0] % 300_000 for c in five] == [0, 0, 0] and len(five) == 3
    first = five[0]
    assert first[1] == bars[0][1] and first[4] == bars[4][4]
    assert first[2] == max(b[2] for b in bars[:5]) and first[3] == min(b[3] for b in bars[:5])
    assert first[5] == sum(b[5] for b in bars[:5])
    gap = [*bars[:2], *bars[7:]]  # minutes 2-6 missing: the second candle is shorter, not filled in
    assert [c[5] for c in candles(gap, 5)] == [
        sum(b[5] for b in bars[:2]),
        sum(b[5] for b in bars[7:10]),
        bars[10][5] + bars[11][5],
    ]


def test_the_interval_keeps_a_window_under_the_candle_cap() -> None:
    assert interval_for(4 * 3_600_000) == 1
    assert interval_for(DAY) == 5
    assert interval_for(7 * DAY) == 60
    for window in (15 * 60_000, 3 * DAY, 7 * DAY):
        assert window / (interval_for(window) * 60_000) <= MAX_CANDLES


def test_a_chart_is_a_png_of_the_window_asked_for() -> None:
    bars = minute_bars(240)
    chart = render("BTCUSDT", bars, window_ms=4 * 3_600_000, window_label="4h", width=800, height=400)
    image = Image.open(io.BytesIO(chart.png))
    assert isinstance(image, PngImagePlugin.PngImageFile) and image.size == (800, 400)
    assert (chart.candles, chart.interval_min, chart.first_ms, chart.last_ms) == (240, 1, bars[0][0], bars[-1][0])
    assert image.text["Description"] == chart.describe()
    assert "BTCUSDT · last 4h · 1m candles" in image.text["Title"]
    colors = image.convert("RGB").getcolors(1_000_000) or []
    assert len(colors) > 4  # candles drawn, not a blank canvas
    with pytest.raises(ValueError, match="no bars"):
        render("BTCUSDT", [], window_ms=DAY, window_label="1d")


def test_the_alert_tail_shows_alerts_newest_first_by_their_own_time_not_by_read_order() -> None:
    from pipeline.messages import Alert, encode
    from pipeline.notify.bot_desk import AlertTail

    tail = AlertTail(bus=None)  # type: ignore[arg-type]  # never started: only what it took is read
    for i, (symbol, ts) in enumerate(
        [
            ("MSFT", "2025-03-15T12:01:00+00:00"),
            ("AAPL", "2025-03-15T12:00:00+00:00"),
            ("NVDA", "2025-03-15T14:00:30+02:00"),
        ]
    ):  # partitions read in turn: the newer MSFT alert came first
        alert = Alert(
            alert_id=f"S-{i}", symbol=symbol, alert_type="buy_signal", priority="high", timestamp=ts, message="x"
        )
        tail._take(encode(alert))
    tail._take(b'{"not": "an alert"}')
    # read order, last first, would be NVDA, AAPL, MSFT; NVDA's 14:00:30+02:00 is 12:00:30 UTC
    assert [a.symbol for a in tail.latest(10)] == ["MSFT", "NVDA", "AAPL"]
    assert [a.symbol for a in tail.latest(1)] == ["MSFT"] and tail.read == 3 and tail.rejected == 1
