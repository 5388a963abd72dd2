"""Smoke tests of every page through Streamlit's AppTest: the app runs in this process, on the
embedded bus, with its SQLite files under a fresh ``tmp_path``.

The ``built_runtimes`` fixture (conftest.py) empties the process-wide ``st.cache_resource`` runtime
before each test and stops every runtime the test built afterwards.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `import runtime` must work however pytest was started
    sys.path.insert(0, str(ROOT))

import runtime  # noqa: E402 - after the sys.path insert above
from storage import market  # noqa: E402 - after the sys.path insert above

APP = str(ROOT / "app.py")
TIMEOUT_S = 30.0
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")

# Page files by title, as app.py declares them: st.Page("<path>", title="<title>", ...).
PAGES = {
    title: path
    for path, title in re.findall(r'st\.Page\(\s*"([^"]+)"\s*,\s*title="([^"]+)"', (ROOT / "app.py").read_text())
}


pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def desk(built_runtimes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A known, deterministic configuration."""
    monkeypatch.setenv("SIMULATOR_SEED", "7")
    monkeypatch.setenv("SIMULATOR_TICK_MS", "200")
    monkeypatch.setenv("SIMULATOR_HISTORY_MINUTES", "180")
    monkeypatch.setenv("SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.setenv("STAGES", "simulator,market-store")
    return tmp_path


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT_S)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def run_until(at: AppTest, done: Callable[[AppTest], bool], what: str, deadline_s: float = TIMEOUT_S) -> AppTest:
    """Re-run the app until ``done(at)``: the feed fills the store on its own threads."""
    end = time.monotonic() + deadline_s
    while True:
        at.run()
        no_exception(at)
        if done(at):
            return at
        if time.monotonic() > end:
            pytest.fail(f"no {what} after {deadline_s:.0f} s")
        time.sleep(0.3)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def series(value: object) -> np.ndarray:
    """A trace array from a plotly spec: a list, or plotly 6's ``{"dtype", "bdata"}`` encoding."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value)


def closes(chart: dict) -> np.ndarray:
    (candles,) = [t for t in chart["data"] if t["type"] == "candlestick"]
    return series(candles["close"])


def candle_count(chart: dict) -> int:
    return len(closes(chart))


# --- Market --------------------------------------------------------------------------------


def test_market_shows_symbols_metrics_and_a_candlestick_chart_per_symbol(desk: Path) -> None:
    at = new_app()
    at.run()
    no_exception(at)
    assert [t.value for t in at.title] == ["Market"]
    (symbols,) = at.multiselect
    assert symbols.label == "Symbols"
    assert symbols.value == ["BTCUSDT", "ETHUSDT"]  # the first two configured symbols

    # The simulator backfills 3 h of history on the empty bus; wait until the store has the bars
    # (drawn mid-backfill, a chart may have fewer candles than the 25-bar average needs).
    run_until(
        at,
        lambda a: len(charts(a)) == 2 and all(len(closes(c)) >= 25 for c in charts(a)),
        "candlestick charts with their history",
    )
    assert market.symbols(runtime.get_runtime().db) == sorted(SYMBOLS)
    assert sorted(at.multiselect(key="market_symbols").options) == sorted(SYMBOLS)
    for chart, symbol in zip(charts(at), ["BTCUSDT", "ETHUSDT"]):
        assert [t["type"] for t in chart["data"]] == ["candlestick", "scatter", "scatter", "bar"]
        assert symbol in chart["layout"]["title"]["text"]
        prices = closes(chart)
        assert len(prices) > 0 and np.isfinite(prices).all() and (prices > 0).all()
        ma7, ma25 = chart["data"][1], chart["data"][2]
        assert (ma7["name"], ma25["name"]) == ("MA 7", "MA 25")
        assert series(ma7["y"])[-1] == pytest.approx(prices[-7:].mean())  # the mean of the last 7 closes
    assert [m.label for m in at.metric] == ["BTCUSDT", "ETHUSDT"]
    for m in at.metric:
        assert float(m.value.replace(",", "")) > 0
        assert m.delta.endswith("% 24h")


def test_market_window_and_symbol_choice_change_the_charts(desk: Path) -> None:
    at = new_app()
    # Wait for most of the 180 minutes of backfilled history to be stored.
    run_until(at, lambda a: len(charts(a)) == 2 and min(map(candle_count, charts(a))) > 120, "3 h of candles")
    window = at.button_group(key="market_window")
    assert window.options == ["1 h", "3 h", "6 h", "24 h", "7 d"]

    window.set_value("1 h").run()
    no_exception(at)
    assert len(charts(at)) == 2
    assert all(0 < candle_count(c) <= 60 for c in charts(at))

    at.multiselect(key="market_symbols").set_value(["SOLUSDT"]).run()
    no_exception(at)
    (chart,) = charts(at)
    assert "SOLUSDT" in chart["layout"]["title"]["text"]
    assert [m.label for m in at.metric] == ["SOLUSDT"]

    at.multiselect(key="market_symbols").set_value([]).run()
    no_exception(at)
    assert not charts(at)
    assert [i.value for i in at.info] == ["Pick at least one symbol."]


def test_market_offers_every_configured_symbol_before_the_store_has_its_bars(
    desk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic replay of a first visit during the backfill: the store has bars for some
    symbols only (ETHUSDT, SOLUSDT) and nothing else arrives (no stages)."""
    from storage.db import Database

    monkeypatch.setenv("STAGES", "")
    store = Database(desk / "desk.db")
    start = (int(time.time()) // 60 - 5) * 60_000
    store.write(
        lambda db: db.table("bars_1m").insert_all(
            {
                "symbol": sym,
                "start": start + i * 60_000,
                "open": 10.0,
                "high": 11.0,
                "low": 9.0,
                "close": 10.5,
                "volume": 1.0,
                "ticks": 4,
            }
            for sym in ("ETHUSDT", "SOLUSDT")
            for i in range(5)
        )
    )
    store.close()

    at = new_app()
    at.run()
    no_exception(at)
    symbols = at.multiselect(key="market_symbols")
    assert set(SYMBOLS) <= set(symbols.options)
    assert symbols.value == ["BTCUSDT", "ETHUSDT"]


# --- Pipeline -------------------------------------------------------------------------------


def test_pipeline_shows_stages_topics_and_groups(desk: Path) -> None:
    at = new_app()
    at.run()
    no_exception(at)
    at.switch_page(PAGES["Pipeline"])
    # The consumer-group table appears once the market-store has committed (within a second).
    # Then the operating tabs' stage metrics (views/pipeline_ops.py) and the stages' client metrics
    # (views/pipeline_clients.py): two more tables.
    run_until(at, lambda a: len(a.dataframe) == 6, "consumer-group table")
    assert [t.value for t in at.title] == ["Pipeline"]
    assert [s.value for s in at.subheader] == ["Stages", "Topics", "Consumer groups", "Dead letters", "Operate"]
    stages, topics, groups = (d.value for d in at.dataframe[:3])
    assert sorted(stages["stage"]) == ["market-store", "simulator"]
    assert stages.set_index("stage").loc["simulator", "kind"] == "source"
    assert stages["running"].all()
    assert "crypto.market_data" in set(topics["topic"])
    assert not any(name.endswith("_dlq") for name in topics["topic"])
    assert set(groups["group"]) == {"market-store"}
    assert [s.value for s in at.success] == ["No rejected messages."]
    clients, client_topics = (d.value for d in at.dataframe[4:6])
    store = clients.set_index("stage").loc["market-store"]
    assert store["bus"] == "embedded" and store["send errors"] == 0
    run_until(at, lambda a: (a.dataframe[5].value["messages in"] > 0).any(), "the market-store's ticks in")
    client_topics = at.dataframe[5].value
    ticks_in = client_topics[
        (client_topics["stage"] == "market-store") & (client_topics["topic"] == "crypto.market_data")
    ]
    assert (ticks_in["bytes in"] > ticks_in["messages in"] * 50).all(), "a tick is 100+ bytes of JSON"


def _left_group(bus: Any, group: str, topic: str = "crypto.market_data") -> None:
    """A group that read and committed, then closed: what a closed WebSocket or an earlier run leaves."""
    consumer = bus.consumer(group, [topic])
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (records := consumer.poll(100, 0.2)):
            assert time.monotonic() < deadline, f"{group} read nothing from {topic}"
        consumer.commit(records)
    finally:
        consumer.close()


def test_pipeline_shows_inactive_groups_apart_and_deletes_them_but_not_one_with_members(
    desk: Path, built_runtimes: list[runtime.Runtime]
) -> None:
    at = new_app()
    at.run()
    no_exception(at)
    bus = built_runtimes[0].bus
    for group in ("ws-trader-0a1b2c3d", "tail-5e6f7a8b", "normalizer"):
        _left_group(bus, group)
    at.switch_page(PAGES["Pipeline"])
    run_until(at, lambda a: len(a.dataframe) == 7, "consumer-group tables")
    assert [s.value for s in at.subheader] == [
        "Stages",
        "Topics",
        "Consumer groups",
        "Inactive consumer groups",
        "Dead letters",
        "Operate",
    ]
    live, inactive = (d.value for d in at.dataframe[2:4])
    assert set(live["group"]) == {"market-store"} and (live["members"] > 0).all()
    assert list(inactive["group"]) == ["normalizer", "tail-5e6f7a8b", "ws-trader-0a1b2c3d"]
    assert list(inactive["kept"]) == ["a stage of the desk", "", ""]  # a desk stage resumes from its offsets
    button = at.button(key="delete_inactive")
    assert button.label == "Delete 2 inactive groups"

    # Between the page's look and the click, a consumer joins one of them: that one is refused.
    tail = bus.consumer("tail-5e6f7a8b", ["crypto.market_data"])
    try:
        tail.poll(10, 0.5)
        button.click().run()
        no_exception(at)
    finally:
        tail.close()
    assert [s.value for s in at.success][:1] == ["Deleted 1 inactive consumer group."]
    assert [w.value for w in at.warning] == [
        "tail-5e6f7a8b was not deleted: it has members (a group is deleted only when no consumer is in it)."
    ]
    groups = {g.group_id for g in bus.describe_groups()}
    assert "ws-trader-0a1b2c3d" not in groups and {"normalizer", "tail-5e6f7a8b", "market-store"} <= groups


# --- Settings -------------------------------------------------------------------------------


def test_settings_shows_config_without_secrets_and_topic_catalog(desk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2-secret")
    at = new_app()
    at.run()
    no_exception(at)
    at.switch_page(PAGES["Settings"]).run()
    no_exception(at)
    assert [t.value for t in at.title] == ["Settings"]
    assert [s.value for s in at.subheader] == ["Market data and signals", "Topic catalog"]
    (config,) = at.json
    shown = json.loads(config.value)
    assert shown["data_dir"] == str(desk)
    assert shown["symbols"] == list(SYMBOLS)
    assert shown["kafka_bootstrap_servers"] is None
    assert shown["kafka_client_config"]["sasl.password"] == "***"
    assert "hunter2-secret" not in config.value
    (catalog,) = at.dataframe
    assert "crypto.market_data" in set(catalog.value["topic"])
    assert {"topic", "partitions", "cleanup", "retention h", "compression", "description"} <= set(catalog.value.columns)


def test_settings_checks_the_api_with_the_desk_token_server_side(desk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("STAGES", "api")
    monkeypatch.setenv("API_PORT", str(port))
    at = new_app()
    at.run()
    at.switch_page(PAGES["Settings"]).run()
    deadline = time.monotonic() + 30
    while not any("answers the desk's token" in m.value for m in at.success) and time.monotonic() < deadline:
        time.sleep(0.5)  # the api worker publishes its health a moment after it starts
        at.run()
    assert any("answers the desk's token" in m.value for m in at.success), [m.value for m in at.warning]
    shown = " ".join(e.value for kind in (at.success, at.markdown, at.caption, at.json) for e in kind)
    stored = json.loads((desk / "api-tokens.json").read_text())["users"]["trader"]
    assert stored not in shown  # used, never shown


# --- The frame app.py puts around every page -----------------------------------------------


def test_app_declares_its_pages() -> None:
    assert list(PAGES) == [
        "Market",
        "Stocks",
        "Analysis",
        "Signals",
        "Portfolio",
        "Backtest",
        "Optimise",
        "Journal",
        "Compare",
        "What-if",
        "Trade",
        "Import",
        "Pipeline",
        "Settings",
    ]
    assert all((ROOT / path).is_file() for path in PAGES.values())


@pytest.mark.parametrize(
    "title",
    [
        "Market",
        "Stocks",
        "Analysis",
        "Portfolio",
        "Backtest",
        "Optimise",
        "Journal",
        "Compare",
        "What-if",
        "Trade",
        "Import",
        "Pipeline",
        "Settings",
    ],
)
def test_every_page_runs_inside_the_app_frame(desk: Path, title: str) -> None:
    """app.py's sidebar (the bus caption) must wrap every page."""
    at = new_app()
    at.run()  # the default page; AppTest needs one run before switch_page
    no_exception(at)
    if title != "Market":
        at.switch_page(PAGES[title]).run()
        no_exception(at)
    assert [t.value for t in at.title] == [title]
    assert "Bus: **embedded**" in [c.value for c in at.sidebar.caption]


# --- Bad configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SYMBOLS", "bad"),
        ("SIMULATOR_TICK_MS", "fast"),
        ("STAGES", "simulator,nope"),
    ],
)
@pytest.mark.parametrize("page", ["Market", "Pipeline"])
def test_bad_config_shows_one_error_line_not_a_stack_trace(
    desk: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, page: str
) -> None:
    monkeypatch.setenv(var, value)
    at = new_app()
    at.run()  # the default page (Market); AppTest needs one run before switch_page
    if page != "Market":
        at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.message for e in at.exception]
    (error,) = at.error
    assert error.value.startswith("The pipeline could not start: ")
    assert var in error.value
    assert "\n" not in error.value and "Traceback" not in error.value
    assert not at.title  # the page never ran
    assert not list(desk.iterdir())  # and nothing was started or written


def test_unusable_data_dir_shows_one_error_line(desk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_dir = desk / "not-a-directory"
    not_a_dir.write_text("")
    monkeypatch.setenv("DATA_DIR", str(not_a_dir))
    at = new_app()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    (error,) = at.error
    assert error.value.startswith("The pipeline could not start: ")
    assert "DATA_DIR" in error.value and "\n" not in error.value
