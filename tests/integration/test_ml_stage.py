"""The ml stage end to end on both buses: ticks on crypto.market_data -> signals on crypto.ml_signals
(seed 001's message, with the registry's real out-of-sample metrics) -> the signal store."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from pipeline.bus.base import Bus, OffsetReset, Record
from pipeline.messages import MarketData, MLSignal, decode, encode
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.registry import ModelRecord, Registry
from pipeline.ml.train import train_symbol
from pipeline.runner import FEED_HEADER, REPLAY, StageRunner
from pipeline.stages.ml import MLStage, confidence_level, signal_of
from pipeline.stages.signal_store import SignalStore
from pipeline.topics import CATALOG, MARKET_DATA, ML_SIGNALS
from storage.db import Database

MODELS = ("random_forest", "logistic_regression")


def _seed_bars(db: Database, symbol: str, bars) -> None:
    rows = [(symbol, int(b.start), b.open, b.high, b.low, b.close, b.volume, 4) for b in bars.itertuples()]
    db.write(lambda d: d.conn.executemany("INSERT OR REPLACE INTO bars_1m VALUES (?,?,?,?,?,?,?,?)", rows))


def _tick(symbol: str, ts: int, price: float) -> MarketData:
    return MarketData(
        symbol=symbol,
        timestamp=ts,
        price=price,
        open=price,
        high=price * 1.01,
        low=price * 0.99,
        volume=1000.0,
        price_change_pct=0.0,
        tick_volume=0.5,
    )


def _signal_time(r: Record) -> int:
    signal = decode(ML_SIGNALS, r.value or b"")
    assert isinstance(signal, MLSignal)
    return signal.timestamp


def _read(bus: Bus, group: str, symbol: str, since: int, want: int, timeout: float = 60.0) -> list:
    """Read the signals of ``symbol`` from ``since`` on until ``want`` of them have come."""
    consumer = bus.consumer(group, [ML_SIGNALS], auto_offset_reset="earliest")
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(got) < want:
            for r in consumer.poll(500, 0.3):
                if r.key == symbol.encode() and _signal_time(r) >= since:
                    got.append(r)
    finally:
        consumer.close()
    return got


def test_ticks_become_signals_with_out_of_sample_metadata_and_replays_stay_replays(
    bus: Bus, tmp_path: Path, group_name
) -> None:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    registry = Registry(db, tmp_path / "models")
    symbol = "QMLAUSDT"
    history = bars_from_simulator(symbol, 1500, seed=3, end_ms=int(time.time() * 1000) // 60_000 * 60_000)
    records = {r.model: r for r in train_symbol(registry, history, symbol, MODELS, horizon=5, n_splits=3)}
    _seed_bars(db, symbol, history.tail(60))

    suffix = group_name("ml")

    class Stage(MLStage):
        name: ClassVar[str] = f"ml-{suffix}"

    class Store(SignalStore):
        name: ClassVar[str] = f"signal-store-{suffix}"
        offset_reset: ClassVar[OffsetReset] = "latest"  # a shared broker holds other runs' signals

    # thresholds at 0: every signal is a BUY or a SELL by the sign of the expected change
    ml = StageRunner(Stage(db, registry, models=MODELS, buy_pct=0.0, sell_pct=0.0), bus, poll_timeout=0.2)
    store = StageRunner(Store(db), bus, poll_timeout=0.2)
    ml.start()
    store.start()
    producer = bus.producer()
    try:
        price = float(history["close"].iloc[-1])
        # both stages start at their topic's end: publish until they have joined and answered
        deadline = time.monotonic() + 60
        while (
            not ml.health.snapshot().produced or not store.health.snapshot().processed
        ) and time.monotonic() < deadline:
            producer.produce(MARKET_DATA, encode(_tick(symbol, int(time.time() * 1000), price)), key=symbol.encode())
            producer.flush(10)
            time.sleep(0.3)
        assert ml.health.snapshot().produced and store.health.snapshot().processed, (
            ml.health.snapshot(),
            store.health.snapshot(),
        )
        now = int(time.time() * 1000)
        for i in range(5):
            producer.produce(
                MARKET_DATA,
                encode(_tick(symbol, now + 10 + i, price * (1 + i / 1000))),
                key=symbol.encode(),
                headers=[(FEED_HEADER, REPLAY)] if i == 4 else None,
            )
        producer.flush(10)
        records_read = _read(bus, group_name("reader"), symbol, since=now + 10, want=2 * 5)
        # the signal store keeps them once each
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stored = db.query(
                "SELECT count(*) AS n FROM ml_signals WHERE symbol=? AND timestamp>=?", (symbol, now + 10)
            )
            if stored[0]["n"] == 10:
                break
            time.sleep(0.2)
    finally:
        ml.stop()
        store.stop()
    signals: list[tuple[MLSignal, bytes | None]] = []
    for r in records_read:
        decoded = decode(ML_SIGNALS, r.value)
        assert isinstance(decoded, MLSignal)
        signals.append((decoded, r.header(FEED_HEADER)))
    assert len(signals) == 2 * 5  # one signal per tick and model
    # tick by tick, both models' signals of a tick together (the decision stage groups them so)
    assert [(s.timestamp, s.model) for s, _ in signals] == [(now + 10 + i, m) for i in range(5) for m in MODELS]
    predictors = {m: registry.load(r) for m, r in records.items()}
    for signal, header in signals:
        record = records[signal.model]
        assert signal.current_price == pytest.approx(price * (1 + (signal.timestamp - now - 10) / 1000))
        # the registry's model on the features the signal carries gives the signal's numbers
        row = np.array([[signal.features[name] for name in record.features]])
        expected_log, confidence = (float(v[0]) for v in predictors[signal.model].predict(row))
        assert signal.expected_change_pct == pytest.approx((math.exp(expected_log) - 1) * 100, rel=1e-9)
        assert signal.predicted_value == pytest.approx(signal.current_price * math.exp(expected_log), rel=1e-9)
        assert signal.confidence == pytest.approx(min(1.0, max(0.0, confidence)), rel=1e-9)
        assert 0.0 <= signal.confidence <= 1.0
        # seed 001's mapping, by hand: above the buy threshold BUY, below the sell one SELL
        assert signal.signal == (
            "BUY" if signal.expected_change_pct > 0 else "SELL" if signal.expected_change_pct < 0 else "HOLD"
        )
        assert signal.metadata["confidence_level"] == (
            "high" if signal.confidence >= 0.8 else "medium" if signal.confidence >= 0.6 else "low"
        )
        assert signal.metadata["model_version"] == str(record.version)
        assert signal.metadata["out_of_sample"]["accuracy"] == pytest.approx(record.metrics["accuracy"])
        assert signal.metadata["baselines"]["persistence"]["accuracy"] == pytest.approx(
            record.baselines["persistence"]["accuracy"]
        )
        assert {"ma_7", "ma_25", "rsi_14", "volatility_7d", "volume_change_pct"} <= set(signal.features)
        assert header == (REPLAY if signal.timestamp == now + 14 else None)
    assert {s.signal for s, _ in signals} <= {"BUY", "SELL"}
    assert stored[0]["n"] == 10
    db.close()


def test_a_model_file_that_fails_to_load_leaves_the_previous_version_active(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    registry = Registry(db, tmp_path / "models")
    symbol = "QMLBUSDT"
    history = bars_from_simulator(symbol, 800, seed=4)
    first = train_symbol(registry, history, symbol, ("logistic_regression",), horizon=5, n_splits=2)[0]
    stage = MLStage(db, registry, models=("logistic_regression",))
    stage.reload()
    assert stage.loaded[(symbol, "logistic_regression")].record.version == first.version
    second = train_symbol(registry, history, symbol, ("logistic_regression",), horizon=5, n_splits=2)[0]
    Path(second.path).write_bytes(b"not a model")
    stage.reload()
    assert stage.loaded[(symbol, "logistic_regression")].record.version == first.version
    versions = {r.version: r for r in registry.records(symbol=symbol)}
    assert versions[first.version].active and not versions[second.version].active
    assert versions[second.version].load_error and str(second.version) in stage.load_errors[-1]
    db.close()


def test_a_reload_reads_the_records_only_when_an_active_version_changed(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    registry = Registry(db, tmp_path / "models")
    symbol = "QMLCUSDT"
    history = bars_from_simulator(symbol, 800, seed=5)
    first = train_symbol(registry, history, symbol, ("logistic_regression",), horizon=5, n_splits=2)[0]
    reads: list[int] = []
    records = registry.records

    def counted(*args: Any, **kwargs: Any) -> list[ModelRecord]:
        reads.append(1)
        return records(*args, **kwargs)

    registry.records = counted  # type: ignore[method-assign]
    stage = MLStage(db, registry, models=("logistic_regression",))
    stage.reload()
    assert stage.loaded[(symbol, "logistic_regression")].record.version == first.version and len(reads) == 1
    stage.reload()  # nothing changed: the active versions are compared, no record is read
    assert len(reads) == 1
    second = train_symbol(registry, history, symbol, ("logistic_regression",), horizon=5, n_splits=2)[0]
    stage.reload()
    assert stage.loaded[(symbol, "logistic_regression")].record.version == second.version and len(reads) == 2
    registry.activate(symbol, "logistic_regression", first.version)  # a roll back is a change too
    stage.reload()
    assert stage.loaded[(symbol, "logistic_regression")].record.version == first.version and len(reads) == 3
    db.close()


@pytest.mark.parametrize(
    ("change", "expected"), [(1.51, "BUY"), (1.5, "HOLD"), (-1.5, "HOLD"), (-1.51, "SELL"), (0.0, "HOLD")]
)
def test_seed_signal_mapping(change: float, expected: str) -> None:
    assert signal_of(change, 1.5, -1.5) == expected


@pytest.mark.parametrize(("confidence", "level"), [(0.8, "high"), (0.79, "medium"), (0.6, "medium"), (0.59, "low")])
def test_seed_confidence_levels(confidence: float, level: str) -> None:
    assert confidence_level(confidence) == level
