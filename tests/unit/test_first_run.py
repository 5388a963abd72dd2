"""The first start: when it trains, in which order, and that its models land in the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.jobs.first_run import FIRST_RUN_BARS, FirstRunTraining, wanted
from pipeline.ml.registry import Registry
from storage.db import Database

TRADING = ("simulator", "market-store", "ml", "decision", "virtual-exchange")


class Empty:
    def records(self) -> list[object]:
        return []


class Trained:
    def records(self) -> list[object]:
        return [object()]


def never() -> Registry:
    raise AssertionError("the registry was loaded though the stages cannot trade")


def test_it_trains_only_a_fresh_desk_that_can_trade() -> None:
    config = load_config({})
    assert wanted(config, TRADING, lambda: Empty())  # type: ignore[arg-type, return-value]
    assert not wanted(config, TRADING, lambda: Trained())  # type: ignore[arg-type, return-value]
    assert not wanted(config, ("simulator", "market-store", "ml"), never)  # no decision stage: nothing to trade
    assert not wanted(load_config({"FIRST_RUN_TRAINING": "off"}), TRADING, never)


def test_the_decision_models_come_first(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    try:
        registry = Registry(db, tmp_path / "models")
        plain = FirstRunTraining(load_config({}), db, registry)
        assert plain.phases == [("random_forest",), ("svm", "logistic_regression")]
        confirmed = FirstRunTraining(load_config({"DECISION_CONFIRM_MODELS": "logistic_regression"}), db, registry)
        assert confirmed.phases == [("random_forest", "logistic_regression"), ("svm",)]
    finally:
        db.close()


def test_a_first_start_registers_active_models_of_every_symbol(tmp_path: Path) -> None:
    config = load_config({"SYMBOLS": "BTCUSDT,ETHUSDT", "ML_MODELS": "logistic_regression", "SIMULATOR_SEED": "3"})
    db = Database(tmp_path / "desk.db")
    try:
        registry = Registry(db, tmp_path / "models")
        job = FirstRunTraining(config, db, registry)
        job._span = (0.5, 0.5)  # the second of two equal phases
        job.progress(0.5, "BTCUSDT: fold 3/5")
        assert (job.snapshot().progress, job.snapshot().message) == (0.75, "first start: BTCUSDT: fold 3/5")
        job.run()
        state = job.snapshot()
        assert state.error is None and state.message == "done" and state.progress == pytest.approx(1.0)
        assert state.trained == ["BTCUSDT logistic_regression v1", "ETHUSDT logistic_regression v1"]
        active = registry.records(active_only=True)
        assert sorted(r.symbol for r in active) == ["BTCUSDT", "ETHUSDT"]
        assert all(r.n_samples < FIRST_RUN_BARS for r in active)  # quick models on 3,000 bars
    finally:
        db.close()
