"""`python -m pipeline train` and `python -m pipeline models` as a user runs them: a real process,
a Binance kline file, a real SQLite registry under DATA_DIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset, walk_forward

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATA_DIR": str(data_dir), "KAFKA_BOOTSTRAP_SERVERS": ""}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _kline_file(path: Path, n: int) -> pd.DataFrame:
    """Write ``n`` simulator bars as a Binance kline file (floats as Python prints them, exactly)."""
    bars = bars_from_simulator("BTCUSDT", n, seed=5, end_ms=1_731_715_200_000 + n * 60_000)
    with path.open("w") as f:
        for b in bars.itertuples():
            start = int(b.start)
            f.write(f"{start},{b.open},{b.high},{b.low},{b.close},{b.volume},{start + 59_999},0,1,0,0,0\n")
    return bars


def test_train_from_a_replay_file_then_list_the_registry(tmp_path: Path) -> None:
    file = tmp_path / "QCLIUSDT-1m-2024-11-16.csv"
    bars = _kline_file(file, 1200)
    trained = _cli(
        "train",
        "--source",
        "replay",
        str(file),
        "--models",
        "logistic_regression",
        "kmeans",
        "--horizon",
        "5",
        "--json",
        data_dir=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    out = json.loads(trained.stdout)
    assert out["errors"] == []
    assert [(t["symbol"], t["model"], t["version"], t["active"]) for t in out["trained"]] == [
        ("QCLIUSDT", "logistic_regression", 1, True),
        ("QCLIUSDT", "kmeans", 1, True),
    ]

    listed = _cli("models", "--json", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {r["model"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"logistic_regression", "kmeans"}
    # the figures are a walk-forward of the file's bars with the CLI's settings: horizon 5 (the flag),
    # 5 folds and 10 bps fees (the defaults); the last training row is the last bar with a 5-bar target
    X, y, _ = make_dataset(bars, 5)
    for model, r in rows.items():
        assert r["interval_ms"] == 60_000 and r["horizon_bars"] == 5
        assert r["train_end"] == int(bars["start"].iloc[-1 - 5])
        assert r["train_start"] == int(bars["start"].iloc[len(bars) - 5 - len(X)])
        expected = walk_forward(model, X, y, 5, n_splits=5, fee_bps=10.0)
        assert r["out_of_sample"]["samples"] == expected.metrics["samples"] == 5 * (len(X) // 6)
        for key in ("accuracy", "base_rate_up", "profit_pct", "trades"):
            assert r["out_of_sample"][key] == pytest.approx(expected.metrics[key], rel=1e-12), (model, key)
        assert set(r["baselines"]) == {"persistence", "always_up", "ma_crossover", "buy_and_hold"}
        for name, baseline in expected.baselines.items():
            for key in ("accuracy", "profit_pct", "trades"):
                want = baseline[key]
                assert r["baselines"][name][key] == (want if want is None else pytest.approx(want, rel=1e-12))
    assert rows["kmeans"]["out_of_sample"]["r2"] is not None  # a return model has R2 and MAE
    assert rows["logistic_regression"]["out_of_sample"]["r2"] is None

    table = _cli("models", data_dir=tmp_path)
    assert "QCLIUSDT" in table.stdout and "logistic_regression" in table.stdout


def test_too_little_history_is_one_clear_line(tmp_path: Path) -> None:
    file = tmp_path / "QCLJUSDT-1m-2024-11-16.csv"
    _kline_file(file, 100)
    result = _cli("train", "--source", "replay", str(file), "--models", "logistic_regression", data_dir=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "QCLJUSDT" in errors[0] and "needs at least" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
