"""`python -m pipeline optimise` and `python -m pipeline backtest --engine` as a user runs them: a real
process, a real candle file (freqtrade's 1-minute test candles from the shared real-data folder,
when it is there), a real SQLite store under DATA_DIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage import optimise as runs_door
from storage.db import Database

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent.parent / "shared" / "realdata" / "candles" / "freqtrade__UNITTEST_BTC-1m.json.ohlcv.csv"
REAL = REAL if REAL.exists() else Path("/work/shared/realdata/candles/freqtrade__UNITTEST_BTC-1m.json.ohlcv.csv")


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATA_DIR": str(data_dir), "KAFKA_BOOTSTRAP_SERVERS": "", "ML_HORIZON_BARS": "15"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(not REAL.exists(), reason="the shared real-data folder is not on this machine")
def test_optimise_a_real_candle_file_and_store_the_run(tmp_path: Path) -> None:
    done = _cli(
        "optimise",
        "--symbol",
        "BTCUSDT",
        "--source",
        "replay",
        str(REAL),
        "--trials",
        "8",
        "--windows",
        "3",
        "--model",
        "logistic_regression",
        "--confirm",
        "none",
        "linear_regression",
        "--buy-pct",
        "0",
        "0.1",
        "--sell-pct",
        "-0.1",
        "0",
        "--json",
        data_dir=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["symbol"] == "BTCUSDT" and out["model"] == "logistic_regression"
    assert [w["final"] for w in out["windows"]] == [False, False, False, True]
    assert out["settings"]["space"]["confirm"] == ["none", "linear_regression"]
    for w in out["windows"]:
        assert w["out_of_sample"] is None or w["out_of_sample"][0] > w["in_sample"][1]  # scored after its window
    assert set(out["readings"]) == {"gap", "dsr", "pbo"}
    chosen = out["chosen"]
    assert (
        0 <= chosen["buy_pct"] <= 0.1
        and -0.1 <= chosen["sell_pct"] <= 0
        and chosen["confirm"] in out["settings"]["space"]["confirm"]
    )
    db = Database(tmp_path / "desk.db")
    try:
        (run,) = runs_door.runs(db)
        assert run["run_id"] == out["run_id"] and run["summary"]["chosen"] == chosen
        assert len(runs_door.trials(db, out["run_id"])) == 8 * 4
    finally:
        db.close()
    # the text form reads the same run
    text = _cli("optimise", "--symbol", "BTCUSDT", "--source", "replay", str(REAL), "--trials", "2", data_dir=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "walk-forward (out-of-sample, chained)" in text.stdout and "eflated Sharpe ratio" in text.stdout


def test_an_impossible_range_is_refused_with_the_parameter_named(tmp_path: Path) -> None:
    done = _cli(
        "optimise", "--symbol", "BTCUSDT", "--source", "simulator", "--stop-loss-pct", "3", "2", data_dir=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: stop_loss_pct: the range 3 to 2 is empty (its low is above its high)"
    assert not (tmp_path / "desk.db").exists()  # refused before anything was read or stored


def test_too_little_history_says_how_much_the_windows_need(tmp_path: Path) -> None:
    done = _cli("optimise", "--symbol", "BTCUSDT", "--source", "simulator", "--bars", "900", data_dir=tmp_path)
    assert done.returncode == 2
    message = done.stderr.strip()
    assert message.startswith("error: BTCUSDT: 900 bars are too few for 4 walk-forward windows of 3:1")
    assert "1,405 bars to walk forward on, with 30% of them to train the models on, 2,029 bars in all" in message


@pytest.mark.skipif(not REAL.exists(), reason="the shared real-data folder is not on this machine")
def test_backtest_takes_the_engine_and_both_make_the_same_trades(tmp_path: Path) -> None:
    trades = {}
    for engine in ("fast", "backtrader"):
        done = _cli(
            "backtest",
            "--symbol",
            "BTCUSDT",
            "--source",
            "replay",
            str(REAL),
            "--model",
            "logistic_regression",
            "--engine",
            engine,
            "--json",
            data_dir=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["settings"]["engine"] == engine and engine in out["timings_s"]
        trades[engine] = [(t["order_id"], t["exit_reason"], round(t["pnl"], 2)) for t in out["trades"]]
    assert trades["fast"] == trades["backtrader"]
