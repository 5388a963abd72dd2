"""``POST /api/pretrade`` over a real runtime (embedded bus, SQLite): the rules a planned trade trips
from the trader's stored rows, its R, the models' view, the cooldown that makes the paper account
refuse it, and 422s that name the field of a missing or impossible value."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.api.app import create_app
from pipeline.bus.base import read_to_end
from pipeline.config import load_config
from pipeline.journal.pretrade_service import EntryRefused, PretradeSettings, place_paper_entry, run_check
from pipeline.messages import Order, decode
from pipeline.topics import ORDERS
from pipeline.wiring import Runtime, build_runtime
from storage import behaviour, market
from storage import signals as signal_store

pytestmark = pytest.mark.timeout(120)
MIN = 60_000


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    config = load_config(
        {"DATA_DIR": str(tmp_path), "STAGES": "", "USER_ID": "alice", "PRETRADE_COOLDOWN_MINUTES": "30"}
    )
    rt = build_runtime(config)
    now = int(time.time() * 1000)
    loss = (
        "alice",
        "t-loss",
        "trade",
        "BTCUSDT",
        "BUY",
        "t-loss",
        now - 65 * MIN,
        now - 5 * MIN,
        20_000.0,
        -600.0,
        -3.0,
    )
    alert = ("a-1", "alice", "revenge_trading", "medium", now - 10 * MIN, '["t-loss"]', "a revenge entry", "{}", now)
    tick = ("BTCUSDT", now - 1000, 100.0, None, None, None, None, None, None)
    signal = ("BTCUSDT", "random_forest", now - 2000, "SELL", "direction", 99.0, 100.0, -0.4, 0.7, "3", "{}")

    def write(d) -> None:
        behaviour.store(d.conn, [loss], [])
        d.conn.execute("INSERT INTO journal_alerts VALUES (?,?,?,?,?,?,?,?,?)", alert)
        market.store_ticks(d.conn, [tick])
        signal_store.store(d.conn, [signal])

    rt.db.write(write)
    yield rt
    rt.stop()


def test_a_planned_trade_gets_its_rules_r_and_the_models_view(runtime: Runtime) -> None:
    client = TestClient(create_app(runtime.api_context()))
    answer = client.post("/api/pretrade", json={"symbol": "BTCUSDT", "side": "BUY", "size": 2, "stop": 98})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["price"], body["price_source"]) == (100.0, "last tick")
    assert {t["rule"] for t in body["trips"]} == {"revenge", "cooldown"}  # 5 min after a -600 loss, same symbol
    assert body["risk"]["amount"] == 4.0 and body["risk"]["targets"] == {"1R": 102.0, "2R": 104.0, "3R": 106.0}
    assert [(m["model"], m["signal"], m["confidence"]) for m in body["models"]] == [("random_forest", "SELL", 0.7)]
    assert body["allowed"] is False and body["cooldown_minutes"] == 30


@pytest.mark.parametrize(
    ("request_body", "field", "rule"),
    [
        ({"symbol": "BTCUSDT", "side": "BUY", "size": 0, "stop": 98}, "size", "is a number > 0"),
        (
            {"symbol": "BTCUSDT", "side": "BUY", "quantity": 1, "stop": 101},
            "stop",
            "is below the entry price 100 for a BUY",
        ),
        (
            {"symbol": "BTCUSDT", "side": "SELL", "quantity": 1, "stop": 99},
            "stop",
            "is above the entry price 100 for a SELL",
        ),
        (
            {"symbol": "ETHUSDT", "side": "BUY", "quantity": 1, "stop": 9},
            "price",
            "is required: the desk has no market price of ETHUSDT",
        ),
        ({"symbol": "BTCUSDT", "side": "BUY", "quantity": 1}, "stop", "is required"),
        ([1, 2], "body", "a JSON object"),
    ],
)
def test_missing_or_impossible_values_get_a_422_naming_the_field(
    runtime: Runtime, request_body: object, field: str, rule: str
) -> None:
    client = TestClient(create_app(runtime.api_context()))
    answer = client.post("/api/pretrade", json=request_body)
    assert answer.status_code == 422
    assert (field, rule) in [(d["field"], d["rule"]) for d in answer.json()["detail"]]


def test_the_paper_account_refuses_while_the_cooldown_is_on_and_takes_it_otherwise(runtime: Runtime) -> None:
    body = {"symbol": "BTCUSDT", "side": "BUY", "quantity": 2, "stop": 98}
    rules = runtime.config.behaviour
    refused = run_check(runtime.db, "alice", body, PretradeSettings(rules, cooldown_min=30))
    with pytest.raises(EntryRefused, match="revenge"):
        place_paper_entry(runtime.producer, refused, 98.0)
    allowed = run_check(runtime.db, "alice", body, PretradeSettings(rules, cooldown_min=0))
    assert allowed.allowed and {t.rule for t in allowed.trips} == {"revenge"}  # said, not enforced
    order_id = place_paper_entry(runtime.producer, allowed, 98.0)
    orders = [decode(ORDERS, r.value or b"", Order) for r in read_to_end(runtime.bus, ORDERS, "pretrade-test")]
    (placed,) = [o for o in orders if isinstance(o, Order)]
    assert placed.order_id == order_id and placed.action == "BUY" and placed.status == "PENDING"
    assert (placed.quantity, placed.risk_management.stop_loss, placed.strategy) == (2.0, 98.0, "manual")
    assert json.loads(json.dumps(placed.metadata)) == {"created_by": "trader", "account": "paper"}
