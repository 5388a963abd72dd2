"""The Portfolio page through AppTest, against a running virtual exchange on the embedded bus.

No simulator and no decision stage: the test publishes the ticks and the orders itself, so every
fill price is known. It opens a position with a BUY, closes it with the page's Close button (a
manual SELL the exchange fills at the next tick), and cancels a LIMIT order from the page.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import runtime
from pipeline.messages import MarketData, Order, OrderType, RiskManagement, TriggerSignal, encode
from pipeline.topics import MARKET_DATA
from pipeline.trading.manual import publish
from tests.ui.test_pages import APP, PAGES, charts, no_exception, run_until

pytestmark = pytest.mark.timeout(180)

FEE, SLIP = 10 / 10_000, 5 / 10_000


@pytest.fixture
def desk(built_runtimes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("STAGES", "market-store,virtual-exchange")
    monkeypatch.setenv("STARTING_BALANCE_USDT", "10000")
    monkeypatch.setenv("EXCHANGE_FEE_BPS", "10")
    monkeypatch.setenv("EXCHANGE_SLIPPAGE_BPS", "5")
    return tmp_path


def now_ms() -> int:
    return int(time.time() * 1000)


def tick(symbol: str, price: float, ts: int) -> None:
    md = MarketData(
        symbol=symbol, timestamp=ts, price=price, open=price, high=price, low=price, volume=1.0, price_change_pct=0.0
    )
    producer = runtime.get_runtime().producer
    producer.produce(MARKET_DATA, encode(md), key=md.key())
    assert producer.flush(10) == 0


def buy(
    order_id: str, ts: int, *, price: float, quantity: float, stop: float, take: float, order_type: OrderType = "MARKET"
) -> Order:
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
        risk_management=RiskManagement(stop_loss=stop, take_profit=take),
        metadata={"account": "paper"},
    )


def stage(name: str):
    return next(w for w in runtime.get_runtime().workers if w.name == name)


def frame_with(at: AppTest, column: str):
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    return frames[0] if frames else None


def metric(at: AppTest, label: str) -> str:
    (value,) = [m.value for m in at.metric if m.label == label]
    return value


def history_row(at: AppTest, order_id: str) -> dict | None:
    history = frame_with(at, "exit_reason")
    if history is None or order_id not in set(history["order_id"]):
        return None
    return history.set_index("order_id").loc[order_id].to_dict()


def shown_row(at: AppTest, order_id: str) -> dict:
    """The history row of an order the test expects on the page."""
    row = history_row(at, order_id)
    assert row is not None, f"{order_id} is not in the history"
    return row


def test_a_position_is_shown_then_closed_by_hand_and_a_pending_limit_order_cancelled(desk: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGES["Portfolio"]).run()
    no_exception(at)
    assert [t.value for t in at.title] == ["Portfolio"]
    infos = [i.value for i in at.info]
    assert any(i.startswith("No orders yet. Orders appear once a model is trained (Signals page)") for i in infos)
    assert any("decision stage is not running" in i for i in infos)
    assert metric(at, "Cash (USDT)") == "10,000.00" and metric(at, "Total return") == "+0.00 %"

    # the exchange reads from the end of its topics: tick until it has seen one
    exchange = stage("virtual-exchange")
    end = time.monotonic() + 30
    while exchange.health.snapshot().processed == 0:
        assert time.monotonic() < end, "the virtual exchange never read a tick"
        tick("BTCUSDT", 100.0, now_ms())
        time.sleep(0.2)

    # a BUY of 0.5 fills at the next tick (101) plus slippage, with the fee on the notional
    t0 = now_ms()
    publish(runtime.get_runtime().producer, buy("ORD-T-BTC-1", t0, price=100.0, quantity=0.5, stop=90.0, take=120.0))
    tick("BTCUSDT", 101.0, t0 + 1)
    fill = 101.0 * (1 + SLIP)
    cash = 10_000 - 0.5 * fill * (1 + FEE)

    run_until(at, lambda a: frame_with(a, "unrealized_pct") is not None, "the open position")
    (position,) = frame_with(at, "unrealized_pct").to_dict("records")
    assert position["order_id"] == "ORD-T-BTC-1" and position["symbol"] == "BTCUSDT"
    assert position["quantity"] == 0.5 and position["entry_price"] == pytest.approx(fill)
    assert (position["stop"], position["take_profit"]) == (90.0, 120.0)
    assert position["unrealized"] == pytest.approx(0.5 * (101.0 - fill) - 0.5 * fill * FEE)
    assert metric(at, "Cash (USDT)") == f"{cash:,.2f}"
    assert metric(at, "Fees paid (USDT)") == f"{0.5 * fill * FEE:,.2f}"
    assert shown_row(at, "ORD-T-BTC-1")["status"] == "FILLED"

    # Close: a manual SELL of the whole position, filled at the next tick (102) less slippage
    at.button(key="close_ORD-T-BTC-1").click().run()
    no_exception(at)
    assert any(s.value.startswith("Close of BTCUSDT sent (MAN-") for s in at.success)
    tick("BTCUSDT", 102.0, t0 + 2)

    def closed(a: AppTest) -> bool:  # the account and the history are read one after the other in a run
        row = history_row(a, "ORD-T-BTC-1")
        return row is not None and row["status"] == "CLOSED" and frame_with(a, "unrealized_pct") is None

    run_until(at, closed, "the position to close")
    row = shown_row(at, "ORD-T-BTC-1")
    exit_price = 102.0 * (1 - SLIP)
    assert row["exit_reason"] == "manual" and row["exit_price"] == pytest.approx(exit_price)
    pnl = 0.5 * (exit_price - fill) - 0.5 * fill * FEE - 0.5 * exit_price * FEE
    assert row["pnl"] == pytest.approx(pnl)
    history = frame_with(at, "exit_reason")
    (sell,) = history[history["action"] == "SELL"].to_dict("records")
    assert sell["order_id"] == f"MAN-{t0 + 1}-BTCUSDT-X"  # made at the market time the exchange had seen
    assert (sell["strategy"], sell["status"], sell["closes"]) == ("manual", "FILLED", "ORD-T-BTC-1")
    assert sell["fill_price"] == pytest.approx(exit_price)
    assert frame_with(at, "unrealized_pct") is None
    assert "No open position." in [c.value for c in at.caption]
    assert metric(at, "Realized P&L (USDT)") == f"{pnl:+,.2f}"
    assert metric(at, "Cash (USDT)") == f"{10_000 + pnl:,.2f}"
    assert metric(at, "Orders the exchange rejected") == "0"

    # the curves: equity against buy-and-hold of BTCUSDT (from the stored 1-minute bars)
    def curves(a: AppTest) -> bool:
        titles = [c["layout"]["title"]["text"] for c in charts(a)]
        return any(t.startswith("Equity vs buy-and-hold") for t in titles) and [
            t["name"] for t in charts(a)[0]["data"]
        ] == ["portfolio", "buy & hold"]

    run_until(at, curves, "the equity curve against buy-and-hold")
    assert [c["layout"]["title"]["text"] for c in charts(at)] == [
        "Equity vs buy-and-hold of the traded symbols",
        "Drawdown",
        "Exposure",
    ]

    # a BUY LIMIT far below the market stays pending until the trader cancels it
    publish(
        runtime.get_runtime().producer,
        buy("ORD-T-BTC-2", now_ms(), price=50.0, quantity=1.0, stop=40.0, take=60.0, order_type="LIMIT"),
    )
    run_until(at, lambda a: frame_with(a, "type") is not None, "the pending limit order")
    (pending,) = frame_with(at, "type").to_dict("records")
    assert (pending["order_id"], pending["type"], pending["action"]) == ("ORD-T-BTC-2", "LIMIT", "BUY")
    at.button(key="cancel_ORD-T-BTC-2").click().run()
    no_exception(at)

    def cancelled(a: AppTest) -> bool:
        row = history_row(a, "ORD-T-BTC-2")
        return row is not None and row["status"] == "CANCELLED"

    run_until(at, cancelled, "the limit order to be cancelled")
    assert shown_row(at, "ORD-T-BTC-2")["reason"] == "cancelled by the trader"
    assert frame_with(at, "type") is None
    assert "No pending order." in [c.value for c in at.caption]
    assert metric(at, "Cash (USDT)") == f"{10_000 + pnl:,.2f}"  # a cancelled order costs nothing

    # the history filters
    at.selectbox(key="pf_status").set_value("CANCELLED").run()
    no_exception(at)
    assert list(frame_with(at, "exit_reason")["order_id"]) == ["ORD-T-BTC-2"]
    at.selectbox(key="pf_status").set_value("All").run()
    at.selectbox(key="pf_symbol").set_value("BTCUSDT").run()
    assert list(frame_with(at, "exit_reason")["order_id"]) == [
        "ORD-T-BTC-2",
        f"MAN-{t0 + 1}-BTCUSDT-X",
        "ORD-T-BTC-1",
    ]  # newest first


def test_an_empty_account_explains_where_orders_come_from_and_which_stages_are_missing(
    built_runtimes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGES", "")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGES["Portfolio"]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("virtual-exchange stage is not running" in w.value for w in at.warning)
    assert any("decision stage is not running" in i.value for i in at.info)
    assert any("signals reach high confidence" in i.value for i in at.info)
    assert metric(at, "Equity (USDT)") == "10,000.00"
    assert metric(at, "Orders the exchange rejected") == "—"


def test_settings_save_the_trading_settings_that_changed(
    built_runtimes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.config import load_config

    env_file = tmp_path / "settings.env"
    env_file.write_text("# mine\nUSER_ID=alice\n")
    monkeypatch.setattr(runtime, "ENV_FILE", env_file)
    restarts: list[int] = []
    monkeypatch.setattr(runtime, "restart_runtime", lambda: restarts.append(1))  # keep the one test runtime
    monkeypatch.setenv("STAGES", "")
    for name in (
        "STOP_LOSS_PCT",
        "POSITION_SIZING",
        "EXCHANGE_FEE_BPS",
        "DECISION_CONFIRM_MODELS",
        "DECISION_HIGH_CONFIDENCE",
        "DECISION_MEDIUM_CONFIDENCE",
    ):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGES["Settings"]).run()
    no_exception(at)
    next(n for n in at.number_input if n.label == "Stop-loss % under the entry").set_value(3.0)
    next(s for s in at.selectbox if s.label == "Position sizing").set_value("fixed_risk")
    next(n for n in at.number_input if n.label == "Fee (bps of the notional)").set_value(12.0)
    next(m for m in at.multiselect if m.label.startswith("Confirm models")).set_value(["svm"])
    high = next(n for n in at.number_input if n.label == "High confidence (acts alone)")
    high.set_value(0.5)  # under the medium 0.6: refused, nothing written
    next(b for b in at.button if b.label == "Save and restart the pipeline").click().run()
    assert not at.exception
    assert restarts == []
    assert any(
        "DECISION_HIGH_CONFIDENCE=0.5 must be at least DECISION_MEDIUM_CONFIDENCE=0.6" in e.value for e in at.error
    )
    assert env_file.read_text() == "# mine\nUSER_ID=alice\n"
    next(n for n in at.number_input if n.label == "High confidence (acts alone)").set_value(0.85)
    next(b for b in at.button if b.label == "Save and restart the pipeline").click().run()
    no_exception(at)
    assert restarts == [1]
    assert any(s.value.startswith("Saved to `.env`") for s in at.success)
    saved = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert {
        k: saved[k] for k in ("STOP_LOSS_PCT", "POSITION_SIZING", "EXCHANGE_FEE_BPS", "DECISION_CONFIRM_MODELS")
    } == {
        "STOP_LOSS_PCT": "3",
        "POSITION_SIZING": "fixed_risk",
        "EXCHANGE_FEE_BPS": "12",
        "DECISION_CONFIRM_MODELS": "svm",
    }
    assert saved["DECISION_HIGH_CONFIDENCE"] == "0.85"
    assert not {"TAKE_PROFIT_PCT", "STARTING_BALANCE_USDT", "DECISION_MODEL", "DECISION_MEDIUM_CONFIDENCE"} & set(
        saved
    )  # unchanged: not written
    config = load_config(saved)
    assert (config.risk.stop_loss_pct, config.risk.sizing, config.exchange.fee_bps) == (3.0, "fixed_risk", 12.0)
    assert config.decision_confirm_models == ("svm",)
    assert (config.risk.medium_confidence, config.risk.high_confidence) == (0.6, 0.85)
