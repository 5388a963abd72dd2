"""The model registry on a real SQLite file, training end to end, and bars from the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.ml.data import bars_from_simulator, bars_from_store
from pipeline.ml.evaluate import Evaluation, make_dataset, walk_forward
from pipeline.ml.features import FEATURES
from pipeline.ml.models import Predictor, fit_predictor
from pipeline.ml.registry import ModelLoadError, ModelRecord, Registry, UnknownModelError
from pipeline.ml.train import NotEnoughDataError, min_bars, train_symbol
from storage.db import Database

END_MS = 1_800_000_000_000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "desk.db")
    yield database
    database.close()


@pytest.fixture
def registry(db: Database, tmp_path: Path) -> Registry:
    return Registry(db, tmp_path / "models")


@pytest.fixture(scope="module")
def dataset() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    return make_dataset(bars_from_simulator("BTCUSDT", 1_500, seed=1, end_ms=END_MS), 5)


def fitted(
    dataset: tuple[pd.DataFrame, np.ndarray, np.ndarray], name: str = "logistic_regression", rows: int = 1_000
) -> tuple[Predictor, Evaluation]:
    X, y, _ = dataset
    evaluation = walk_forward(name, X.iloc[:rows], y[:rows], 5, n_splits=3)
    return fit_predictor(name, X.to_numpy()[:rows], y[:rows], 5), evaluation


def register(registry: Registry, predictor: Predictor, evaluation: Evaluation) -> ModelRecord:
    return registry.register(
        "BTCUSDT",
        predictor,
        evaluation,
        interval_ms=60_000,
        train_start=END_MS - 3_600_000,
        train_end=END_MS,
        n_samples=1_000,
    )


def test_versions_activation_and_exact_round_trip(registry: Registry, dataset: tuple) -> None:
    first, evaluation = fitted(dataset, rows=800)
    second, _ = fitted(dataset, rows=1_000)
    v1 = register(registry, first, evaluation)
    v2 = register(registry, second, evaluation)
    assert (v1.version, v2.version) == (1, 2) and v2.active
    records = registry.records("BTCUSDT", "logistic_regression")
    assert [(r.version, r.active) for r in records] == [(2, True), (1, False)]
    assert [r.version for r in registry.records(active_only=True)] == [2]
    assert registry.records(symbol="ETHUSDT") == []

    record = records[0]
    assert record.path == str((registry.models_dir / "BTCUSDT/logistic_regression/v2.joblib").resolve())
    assert registry.file(record) == Path(record.path) and Path(record.path).exists()
    assert record.features == FEATURES and record.horizon == 5 and record.n_samples == 1_000
    assert record.metrics == evaluation.metrics and record.baselines == evaluation.baselines
    assert set(record.report["importances"]) == set(FEATURES)  # filled from the predictor
    assert record.label == "BTCUSDT/logistic_regression/v2" and record.load_error is None

    X = dataset[0].to_numpy()[-200:]
    loaded = registry.load(record)
    for got, want in zip(loaded.predict(X), second.predict(X)):
        np.testing.assert_array_equal(got, want)

    switched = registry.activate("BTCUSDT", "logistic_regression", 1)
    assert switched.active and switched.version == 1
    assert [(r.version, r.active) for r in registry.records("BTCUSDT")] == [(2, False), (1, True)]
    with pytest.raises(UnknownModelError):
        registry.activate("BTCUSDT", "logistic_regression", 9)


def test_a_broken_file_gives_a_one_line_error_and_never_becomes_active(registry: Registry, dataset: tuple) -> None:
    predictor, evaluation = fitted(dataset)
    v1 = register(registry, predictor, evaluation)
    v2 = register(registry, predictor, evaluation)
    path = registry.file(v1)
    path.write_bytes(b"not a joblib file")
    with pytest.raises(ModelLoadError) as err:
        registry.load(v1)
    message = str(err.value)
    assert str(path) in message and "\n" not in message

    with pytest.raises(ModelLoadError):
        registry.activate("BTCUSDT", "logistic_regression", 1)
    v1_now = registry.records("BTCUSDT", "logistic_regression")[1]
    assert not v1_now.active and v1_now.load_error and str(path) in v1_now.load_error
    assert registry.records(active_only=True)[0].version == 2

    registry.file(v2).replace(path)  # v2's bytes under v1's name: a mismatched file
    with pytest.raises(ModelLoadError, match="holds BTCUSDT/logistic_regression/v2"):
        registry.load(v1)
    with pytest.raises(ModelLoadError, match="missing"):
        registry.load(v2)
    registry.set_load_error("BTCUSDT", "logistic_regression", 2, "gone\nreally")
    assert registry.records(active_only=True)[0].load_error == "gone really"
    registry.set_load_error("BTCUSDT", "logistic_regression", 2, None)
    assert registry.records(active_only=True)[0].load_error is None


def test_train_symbol_registers_every_model_with_progress(registry: Registry) -> None:
    bars = bars_from_simulator("SOLUSDT", 2_000, seed=3, end_ms=END_MS)
    seen: list[tuple[float, str]] = []
    records = train_symbol(
        registry,
        bars,
        "SOLUSDT",
        ("logistic_regression", "kmeans", "knn"),
        horizon=5,
        n_splits=3,
        max_train_rows=1_500,
        progress=lambda f, m: seen.append((f, m)),
    )
    assert [r.model for r in records] == ["logistic_regression", "kmeans", "knn"]
    assert all(r.active and r.version == 1 for r in records)
    assert len(seen) == 3 * 4 and seen[-1][0] == pytest.approx(1.0)
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    log_reg, kmeans, knn = records
    assert log_reg.n_samples == 1_500 and log_reg.train_end == bars["start"].iloc[-1 - 5]
    assert log_reg.train_start == bars["start"].iloc[-1 - 5 - 1_499]
    assert log_reg.report["settings"]["max_train_rows"] == 1_500
    assert kmeans.metrics["r2"] is not None and kmeans.report["importances"] is None
    assert registry.load(knn).predict(np.zeros((3, len(FEATURES))))[0].shape == (3,)

    with pytest.raises(NotEnoughDataError, match=f"SOLUSDT has 300 bars; training needs at least {min_bars(15, 5)}"):
        train_symbol(registry, bars.iloc[:300], "SOLUSDT")


def test_bars_from_the_store_oldest_first(db: Database) -> None:
    bars = bars_from_simulator("XRPUSDT", 50, seed=2, end_ms=END_MS)
    rows = [
        ("XRPUSDT", int(b.start), b.open, b.high, b.low, b.close, b.volume, 4) for b in bars.itertuples(index=False)
    ]
    db.write(lambda d: d.conn.executemany("INSERT INTO bars_1m VALUES (?,?,?,?,?,?,?,?)", rows))
    stored = bars_from_store(db, "XRPUSDT")
    pd.testing.assert_frame_equal(stored, bars)
    pd.testing.assert_frame_equal(bars_from_store(db, "XRPUSDT", limit=10), bars.iloc[-10:].reset_index(drop=True))
    assert bars_from_store(db, "BTCUSDT").empty
