"""The bot's fills reach the journal: a position the virtual exchange opened and closed goes through
paper-journal, the normalizer, enricher, behaviour and journal store, on both buses, as one trade of
the account ``paper:<model>`` with the exchange's exact prices, fees and P&L, tagged with the model
and its confidence; a redelivered close is stored once, and a close without its fill is dead-lettered."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.bus.base import Bus
from pipeline.messages import Order, RiskManagement, TriggerSignal, encode
from pipeline.runner import StageRunner
from pipeline.stages.paper_journal import PaperJournal
from pipeline.topics import CATALOG, ORDERS
from pipeline.trading.exchange import Exchange, ExchangeSettings
from storage.db import Database
from tests.integration.test_journal_flow import Journal

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def desk(bus: Bus, tmp_path: Path) -> Iterator[tuple[Journal, StageRunner]]:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    journal = Journal(bus, db)
    suffix = uuid.uuid4().hex[:8]
    stage = type("Paper", (PaperJournal,), {"name": f"paper-journal-{suffix}", "offset_reset": "latest"})()
    paper = StageRunner(stage, bus, poll_timeout=0.1)
    journal.runners.append(paper)
    journal.start()
    yield journal, paper
    journal.stop()
    db.close()


def opened_and_closed(model: str) -> tuple[list[Order], Exchange]:
    """A BUY the exchange fills at the next tick and closes at its take-profit: every status it said."""
    now = int(time.time() * 1000)
    exchange = Exchange(ExchangeSettings(fee_bps=10.0, slippage_bps=5.0))
    order = Order(
        order_id=f"O-{model}",
        symbol="BTCUSDT",
        timestamp=now,
        action="BUY",
        order_type="MARKET",
        quantity=0.01,
        price=68_000.0,
        total_value=680.0,
        status="PENDING",
        strategy="ml_signal_strategy",
        trigger_signal=TriggerSignal(model=model, confidence=0.85, expected_change_pct=0.4),
        risk_management=RiskManagement(stop_loss=66_640.0, take_profit=71_400.0),
        metadata={"confidence_level": "high", "account": "paper"},
    )
    said = [order, *exchange.submit(order)]
    said += exchange.on_tick("BTCUSDT", now + 1000, 68_000.0)
    said += exchange.on_tick("BTCUSDT", now + 60_000, 71_500.0)
    return said, exchange


def test_a_closed_paper_position_becomes_one_trade_of_its_models_account(desk: tuple[Journal, StageRunner]) -> None:
    journal, paper = desk
    model = f"rf-{uuid.uuid4().hex[:6]}"
    user = f"paper:{model}"
    said, exchange = opened_and_closed(model)
    assert [o.status for o in said] == ["PENDING", "FILLED", "CLOSED"]
    for o in said:
        journal.producer.produce(ORDERS, encode(o), key=o.key())
    journal.producer.flush(10)

    book = exchange.books[f"O-{model}"]
    journal.user = user
    (row,) = journal.rows(1)
    assert (row["kind"], row["side"], row["symbol"], row["source"]) == ("trade", "BUY", "BTCUSDT", "paper")
    assert (row["entry_price"], row["exit_price"], row["quantity"]) == (book.fill_price, book.exit_price, 0.01)
    assert (row["entry_time"], row["exit_time"]) == (book.filled_at, book.closed_at)
    assert row["fees"] == pytest.approx(book.fill_fee + book.exit_fee)
    assert row["pnl"] == pytest.approx(book.pnl)  # 0.01 x (71464.25 - 68034) less both fees
    assert row["pnl"] == pytest.approx(
        0.01 * (71_500 * 0.9995 - 68_000 * 1.0005) - 0.001 * 0.01 * (71_500 * 0.9995 + 68_000 * 1.0005)
    )
    assert (row["stop_loss"], row["setup"]) == (66_640.0, model)
    assert json.loads(row["tags"]) == [f"model:{model}", "confidence:high"]
    assert f"paper order O-{model}" in row["notes"] and "take_profit" in row["notes"]

    # The exchange says CLOSED again (a restart republishes its word): still one trade.
    journal.producer.produce(ORDERS, encode(said[-1]), key=said[-1].key())
    # A close that lost its fill price cannot be journaled: dead-lettered, and the stage goes on.
    broken = said[-1].model_copy(
        update={
            "order_id": f"O-{model}-2",
            "metadata": {k: v for k, v in said[-1].metadata.items() if k != "fill_price"},
        }
    )
    journal.producer.produce(ORDERS, encode(broken), key=broken.key())
    journal.producer.flush(10)
    deadline = time.monotonic() + 30
    while paper.health.snapshot().dead_lettered < 1:
        assert time.monotonic() < deadline, "the broken close was not dead-lettered"
        time.sleep(0.2)
    journal.settle()
    assert len(journal.rows(1)) == 1
