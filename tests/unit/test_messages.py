"""Every validation rule of the seeds, on the wire path (decode) and the Python path (build)."""

from __future__ import annotations

import copy
import json
import pickle
import random
import time
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from pipeline import messages as m
from pipeline.errors import BadMessageError
from pipeline.topics import CATALOG, retry_source

NOW = int(time.time() * 1000)


def tick(**over: object) -> dict:
    base = {
        "symbol": "BTCUSDT",
        "timestamp": NOW,
        "price": 68000.5,
        "open": 67500.0,
        "high": 68500.0,
        "low": 67200.0,
        "volume": 12345.67,
        "price_change_pct": 2.15,
    }
    return {**base, **over}


def signal(**over: object) -> dict:
    base = {
        "symbol": "BTCUSDT",
        "timestamp": NOW,
        "model": "random_forest",
        "prediction_type": "return",
        "predicted_value": 69500.0,
        "current_price": 68000.5,
        "expected_change_pct": 2.21,
        "confidence": 0.85,
        "signal": "BUY",
        "features": {"ma_7": 67800.0},
        "metadata": {"model_version": "1"},
    }
    return {**base, **over}


def order(**over: object) -> dict:
    base = {
        "order_id": "ORD-1",
        "symbol": "BTCUSDT",
        "timestamp": NOW,
        "action": "BUY",
        "order_type": "MARKET",
        "quantity": 0.1,
        "price": 68000.5,
        "total_value": 6800.05,
        "status": "PENDING",
        "strategy": "ml_signal_strategy",
        "trigger_signal": {"model": "random_forest", "confidence": 0.85, "expected_change_pct": 2.21},
        "risk_management": {
            "stop_loss": 66640.49,
            "take_profit": 71400.53,
            "stop_loss_pct": -2.0,
            "take_profit_pct": 5.0,
        },
        "metadata": {},
    }
    return {**base, **over}


def trade(**over: object) -> dict:
    base = {
        "trade_id": "t1",
        "user_id": "u1",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "entry_price": 100.0,
        "exit_price": 110.0,
        "quantity": 1.0,
        "entry_time": NOW - 60_000,
        "exit_time": NOW,
        "pnl": 10.0,
        "notes": None,
        "source": "manual",
    }
    return {**base, **over}


def rejected(topic: str, payload: dict) -> BadMessageError:
    with pytest.raises(BadMessageError) as info:
        m.decode(topic, json.dumps(payload).encode())
    return info.value


def test_valid_seed_examples_pass_both_paths() -> None:
    for topic, payload in [
        ("crypto.market_data", tick()),
        ("crypto.ml_signals", signal()),
        ("crypto.orders", order()),
        ("normalized-trades", trade()),
    ]:
        decoded = m.decode(topic, json.dumps(payload).encode())
        assert m.decode(topic, m.encode(decoded)) == decoded
        assert m.build(type(decoded), **payload) == decoded


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("symbol", "btcusdt", "matches ^[A-Z]{3,6}USDT$"),
        ("symbol", "BTCEUR", "matches ^[A-Z]{3,6}USDT$"),
        ("symbol", "ABCDEFGUSDT", "matches ^[A-Z]{3,6}USDT$"),
        ("price", 0, "price > 0"),
        ("open", -1.0, "open > 0"),
        ("high", 0.0, "high > 0"),
        ("low", -5, "low > 0"),
        ("volume", -0.01, "volume >= 0"),
    ],
)
def test_market_data_field_rules_name_field_value_rule(field: str, value: object, rule: str) -> None:
    err = rejected("crypto.market_data", tick(**{field: value}))
    assert any(v.field == field and v.value == value and v.rule.startswith(rule) for v in err.violations), err


def test_market_data_high_below_low() -> None:
    err = rejected("crypto.market_data", tick(high=100.0, low=200.0))
    assert err.violations[0].field == "high" and err.violations[0].value == 100.0
    assert "high >= low" in err.violations[0].rule


def test_market_data_missing_and_wrong_types() -> None:
    payload = tick()
    del payload["price"]
    err = rejected("crypto.market_data", payload)
    assert [(v.field, v.rule) for v in err.violations] == [("price", "required")]
    err = rejected("crypto.market_data", tick(timestamp="yesterday"))
    assert err.violations[0].field == "timestamp"


def test_not_json_is_a_bad_message() -> None:
    with pytest.raises(BadMessageError, match="valid JSON"):
        m.decode("crypto.market_data", b"{oops")


def test_freshness_rules_five_and_two_minutes() -> None:
    fresh = m.build(m.MarketData, **tick())
    m.check_fresh(fresh, NOW + 4 * 60_000)
    with pytest.raises(BadMessageError, match="within the last 5 minutes") as info:
        m.check_fresh(fresh, NOW + 6 * 60_000)
    assert info.value.violations[0].field == "timestamp"
    sig = m.build(m.MLSignal, **signal())
    m.check_fresh(sig, NOW + 60_000)
    with pytest.raises(BadMessageError, match="within the last 2 minutes"):
        m.check_fresh(sig, NOW + 3 * 60_000)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"confidence": 1.01}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
        ({"signal": "STRONG_BUY"}, "signal"),
        ({"predicted_value": 0}, "predicted_value"),
        ({"current_price": -1}, "current_price"),
    ],
)
def test_signal_rules(over: dict, field: str) -> None:
    err = rejected("crypto.ml_signals", signal(**over))
    assert err.violations[0].field == field


@pytest.mark.parametrize(
    ("over", "field", "rule"),
    [
        ({"quantity": 0, "total_value": 0}, "quantity", "quantity > 0"),
        ({"price": 0}, "price", "price > 0"),
        ({"action": "HOLD"}, "action", "one of"),
        ({"total_value": 7000.0}, "total_value", "total_value = quantity * price"),
        (
            {"risk_management": {"stop_loss": 69000.0, "take_profit": 71400.53}},
            "risk_management.stop_loss",
            "stop_loss < price",
        ),
        (
            {"risk_management": {"stop_loss": 66000.0, "take_profit": 67000.0}},
            "risk_management.take_profit",
            "price (68000.5) < take_profit",
        ),
    ],
)
def test_order_rules(over: dict, field: str, rule: str) -> None:
    err = rejected("crypto.orders", order(**over))
    assert err.violations[0].field == field and rule in err.violations[0].rule, err


def test_sell_order_mirrors_stop_and_target() -> None:
    ok = order(action="SELL", risk_management={"stop_loss": 69000.0, "take_profit": 66000.0})
    sell = m.decode("crypto.orders", json.dumps(ok).encode())
    assert isinstance(sell, m.Order)
    assert sell.action == "SELL"
    err = rejected("crypto.orders", order(action="SELL"))
    assert "stop_loss > price" in err.violations[0].rule


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"side": "LONG"}, "side"),
        ({"entry_price": 0}, "entry_price"),
        ({"quantity": -1}, "quantity"),
        ({"exit_time": NOW - 120_000}, "exit_time"),
        ({"exit_price": None}, "exit_price"),
        ({"trade_id": ""}, "trade_id"),
    ],
)
def test_trade_rules(over: dict, field: str) -> None:
    err = rejected("normalized-trades", trade(**over))
    assert err.violations[0].field == field


def test_seed_003_formats() -> None:
    price = {
        "symbol": "VCB",
        "time": "2024-12-04T09:15:00+07:00",
        "open": 85.5,
        "high": 86.2,
        "low": 85.0,
        "close": 86.0,
        "volume": 1250000,
        "collected_at": "2024-12-04T09:15:30.123456",
    }
    bar = m.decode("stock_prices_raw", json.dumps(price).encode())
    assert isinstance(bar, m.StockPrice)
    assert bar.close == 86.0
    assert rejected("stock_prices_raw", {**price, "high": 1.0}).violations[0].field == "high"
    trig = {
        "trigger_id": "u",
        "symbol": "VCB",
        "trigger_type": "price_update",
        "timestamp": "2024-12-04T09:15:00+07:00",
        "metadata": {"priority": "normal"},
    }
    m.decode("analysis_triggers", json.dumps(trig).encode())
    assert rejected("analysis_triggers", {**trig, "trigger_type": "whim"}).violations[0].field == "trigger_type"
    alert = {
        "alert_id": "a",
        "symbol": "VCB",
        "alert_type": "buy_signal",
        "priority": "urgent",
        "timestamp": "2024-12-04T11:00:00+07:00",
        "message": "x",
        "data": {},
    }
    assert rejected("alerts", alert).violations[0].field == "priority"
    result = {
        "result_id": "r",
        "symbol": "VCB",
        "analysis_type": "technical",
        "timestamp": "2024-12-04T10:00:00+07:00",
        "results": {"score": 0.8, "confidence": 1.5},
    }
    assert rejected("analysis_results", result).violations[0].field == "results.confidence"


def test_messages_are_immutable() -> None:
    t = m.build(m.MarketData, **tick())
    assert isinstance(t, m.MarketData)
    with pytest.raises(ValidationError, match="frozen"):
        t.price = 1.0


def test_extend_equals_the_validated_model() -> None:
    base = m.decode("normalized-trades", json.dumps(trade(tags=["breakout"], fees=0.4)).encode())
    context = {"entry": {"price": 68010.0, "trend": "up"}, "exit": {"missing": True, "reason": "no bars"}}
    fast = m.extend(m.EnrichedTrade, base, context=context)
    slow = m.EnrichedTrade.model_validate({**base.model_dump(), "context": context}, strict=False)
    assert type(fast) is m.EnrichedTrade
    assert fast == slow
    assert m.encode(fast) == m.encode(slow)
    assert m.decode("enriched-trades", m.encode(fast)) == slow
    assert fast.model_dump() == slow.model_dump()
    assert base.__dict__.get("context") is None  # the input is not changed
    with pytest.raises(ValidationError, match="frozen"):
        fast.context = {}


SIGNAL: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "timestamp": NOW,
    "model": "random_forest",
    "prediction_type": "direction",
    "predicted_value": 68_100.5,
    "current_price": 68_000.0,
    "expected_change_pct": 0.148,
    "confidence": 0.61,
    "signal": "HOLD",
    "features": {"rsi_14": 51.2, "ma_7": None},
    "metadata": {"model_version": "2", "out_of_sample": {"accuracy": 0.53}},
}


def test_trusted_equals_the_validated_model() -> None:
    fields = SIGNAL
    fast = m.trusted(m.MLSignal, **fields)
    slow = m.MLSignal.model_validate(fields)
    assert type(fast) is m.MLSignal and fast == slow == m.MLSignal.model_construct(**fields)
    assert fast.model_fields_set == slow.model_fields_set
    assert m.encode(fast) == slow.__pydantic_serializer__.to_json(slow)
    assert m.decode("crypto.ml_signals", m.encode(fast)) == slow
    with pytest.raises(ValidationError, match="frozen"):
        fast.confidence = 1.0


def _plain_values(rnd: random.Random, depth: int = 0) -> object:
    kinds = ["str", "int", "float", "none", "bool"] + (["list", "dict"] if depth < 2 else [])
    kind = rnd.choice(kinds)
    if kind == "str":
        return "".join(rnd.choice('ab"\\/\n\t\u00e9\u2028\U0001f600=+@,') for _ in range(rnd.randint(0, 6)))
    if kind == "int":
        return rnd.choice([0, 1, -1, 2**53, -(2**63), 2**63 - 1, rnd.randint(-(10**6), 10**6)])
    if kind == "float":
        return rnd.choice(
            [
                0.1,
                -0.0,
                1e-7,
                1e21,
                123456.789,
                5e-324,
                1.7976931348623157e308,
                float("inf"),
                float("nan"),
                rnd.uniform(-1e6, 1e6),
                rnd.random() * 10 ** rnd.randint(-12, 12),
            ]
        )
    if kind == "none":
        return None
    if kind == "bool":
        return rnd.random() < 0.5
    if kind == "list":
        return [_plain_values(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    return {f"k{i}": _plain_values(rnd, depth + 1) for i in range(rnd.randint(0, 3))}


def test_plain_json_models_encode_as_pydantic_does() -> None:
    """``encode`` writes the journal's models with orjson; the bytes must be pydantic's, whatever the values."""
    rnd = random.Random(5)
    for _ in range(400):
        text = _plain_values(rnd)
        fields = {
            **trade(
                notes=text if isinstance(text, str) else None,
                pnl=rnd.uniform(-1e5, 1e5),
                entry_price=rnd.random() * 10 ** rnd.randint(-8, 8) + 1e-9,
            ),
            "tags": tuple(str(_plain_values(rnd)) for _ in range(rnd.randint(0, 3))),
            "fees": rnd.random(),
        }
        context = {"entry": _plain_values(rnd), "exit": {"missing": True, "reason": str(text)}}
        models = [
            m.build(m.Trade, **fields),
            m.build(m.EnrichedTrade, **fields, context=context),
            m.build(
                m.RawTrade,
                raw_id="r",
                user_id="u",
                source="csv",
                format="binance-spot",
                received_at=NOW,
                payload={"Price": text, "x": _plain_values(rnd)},
                row=rnd.randint(2, 9),
            ),
            m.build(
                m.BehavioralAlert,
                alert_id="a",
                user_id="u",
                alert_type="loss_streak",
                severity="high",
                timestamp=NOW,
                trade_ids=["t1"],
                message=str(text),
                details={"v": _plain_values(rnd)},
            ),
            m.build(
                m.MLSignal,
                symbol="BTCUSDT",
                timestamp=NOW,
                model="svm",
                prediction_type="direction",
                predicted_value=rnd.random() * 10 ** rnd.randint(-8, 8) + 1e-9,
                current_price=rnd.uniform(1e-6, 1e5),
                expected_change_pct=rnd.uniform(-50, 50),
                confidence=rnd.random(),
                signal="HOLD",
                features={"rsi_14": rnd.uniform(0, 100), "ma_7": None, "v": rnd.uniform(-1e9, 1e9)},
                metadata={"model_version": "3", "out_of_sample": _plain_values(rnd), "x": _plain_values(rnd)},
            ),
        ]
        signal = models[-1]
        assert isinstance(signal, m.MLSignal)
        # as the ml stage sends it: its features and metadata encoded once, kept and written as they are
        kept = m.trusted(
            m.MLSignal,
            **{**signal.__dict__, "features": m.KeptJSON(signal.features), "metadata": m.KeptJSON(signal.metadata)},
        )
        for model in [*models, kept]:
            assert model.plain_json
            assert m.encode(model) == model.__pydantic_serializer__.to_json(model), model
    assert not m.MarketData.plain_json and not m.Order.plain_json  # the others go through pydantic


def test_kept_json_equals_its_dict_and_cannot_change() -> None:
    values = {"model_version": "3", "out_of_sample": {"accuracy": 0.53, "r2": None}, "samples": [1, 2]}
    kept = m.KeptJSON(values, confidence_level="high")
    assert kept == {**values, "confidence_level": "high"} and isinstance(kept, dict)
    assert orjson.dumps(kept.fragment) == orjson.dumps({**values, "confidence_level": "high"})
    for change in (
        lambda: kept.__setitem__("x", 1),
        lambda: kept.__delitem__("samples"),
        lambda: kept.update(x=1),
        lambda: kept.pop("samples"),
        lambda: kept.popitem(),
        lambda: kept.clear(),
        lambda: kept.setdefault("x", 1),
    ):
        with pytest.raises(TypeError, match="cannot be changed"):
            change()
    assert kept == {**values, "confidence_level": "high"}
    for copied in (pickle.loads(pickle.dumps(kept)), copy.deepcopy(kept), copy.copy(kept)):
        assert type(copied) is m.KeptJSON and copied == kept
        assert orjson.dumps(copied.fragment) == orjson.dumps(kept.fragment)


def test_a_kept_json_message_refuses_what_is_not_json() -> None:
    signal = m.trusted(m.MLSignal, **{**SIGNAL, "features": m.KeptJSON(rsi_14=50.0), "metadata": {"when": object()}})
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        m.encode(signal)


def test_every_catalog_topic_has_a_model_and_schema() -> None:
    schemas = m.json_schemas()
    for name in CATALOG:
        assert m.model_for(name) is not None
        source = retry_source(name)
        if source is not None:  # a delay topic carries its source topic's messages
            assert m.model_for(name) is m.model_for(source)
        elif not name.endswith("_dlq"):
            assert schemas[name]["type"] == "object"
    assert set(schemas["crypto.market_data"]["required"]) >= {"symbol", "timestamp", "price", "volume"}


def test_trade_avro_schema_matches_seed_000() -> None:
    avro = m.trade_avro_schema()
    fields = {f["name"]: f["type"] for f in avro["fields"]}
    assert avro["name"] == "Trade"
    assert fields["side"]["symbols"] == ["BUY", "SELL"]
    assert fields["entry_time"] == "long" and fields["exit_time"] == ["null", "long"]
    assert fields["exit_price"] == ["null", "double"] and fields["source"] == "string"
    assert list(fields)[:12] == [
        "trade_id",
        "user_id",
        "symbol",
        "side",
        "entry_price",
        "exit_price",
        "quantity",
        "entry_time",
        "exit_time",
        "pnl",
        "notes",
        "source",
    ]
    # The extensions after seed 000's fields are optional, so seed-shaped records still read.
    assert all("default" in f for f in avro["fields"][12:])
