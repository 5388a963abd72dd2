"""The Optimise page through AppTest: a walk-forward optimisation on simulator history from the form,
its readings, equity against buy-and-hold, windows, trials and Optuna's figures from the stored
run; the chosen parameters saved as the paper trader's settings; impossible ranges and too little
history refused with what is wrong."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import runtime
from pipeline.config import load_config
from storage import optimise as runs_door
from tests.ui.test_pages import APP, PAGES, charts, no_exception, run_until, series

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def desk(built_runtimes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("STAGES", "")  # an optimisation needs no running stage
    monkeypatch.setenv("SIMULATOR_SEED", "11")
    monkeypatch.setenv("ML_HORIZON_BARS", "5")
    return tmp_path


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGES["Optimise"]).run()
    no_exception(at)
    assert [t.value for t in at.title] == ["Optimise"]
    return at


def widget(widgets, label: str):
    return next(w for w in widgets if w.label.startswith(label))


def fill_form(at: AppTest, bars: int = 3000) -> None:
    widget(at.radio, "Bars from").set_value("Simulator history")
    widget(at.number_input, "Most recent bars").set_value(bars)
    widget(at.selectbox, "Trading model").set_value("logistic_regression")
    widget(at.multiselect, "Confirming models").set_value([])
    widget(at.number_input, "Trials per window").set_value(6)
    widget(at.number_input, "Walk-forward windows").set_value(2)
    widget(at.number_input, "In-sample length").set_value(2.0)
    widget(at.number_input, "BUY above expected change %: low").set_value(0.0)
    widget(at.number_input, "SELL below expected change %: low").set_value(-0.1)


def submit(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Run optimisation").click().run()


def test_an_optimisation_shows_its_readings_equity_windows_trials_and_saves_its_parameters(
    desk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page()
    assert any(i.value.startswith("No optimisation yet.") for i in at.info)
    fill_form(at)
    submit(at)
    no_exception(at)
    run_until(at, lambda a: any(m.label == "Walk-forward return" for m in a.metric), "the optimisation", 180)
    rt = runtime.get_runtime()
    job = rt.optimising
    assert job is not None
    state = job.snapshot()
    assert not state.running and state.error is None and state.run_id and state.result is not None
    request = job.request
    assert (request.symbol, request.source, request.bars, request.model) == (
        "BTCUSDT",
        "simulator",
        3000,
        "logistic_regression",
    )
    assert (request.walk.trials, request.walk.windows, request.walk.in_sample_ratio) == (6, 2, 2.0)
    (stored,) = runs_door.runs(rt.db)
    assert stored["run_id"] == state.run_id
    summary = stored["summary"]

    assert [m.label for m in at.metric] == [
        "Walk-forward return",
        "Out-of-sample Sharpe",
        "In-sample vs out-of-sample gap",
        "Deflated Sharpe ratio",
        "Probability of overfitting",
    ]
    assert widget(at.metric, "Walk-forward return").value == f"{summary['out_of_sample']['return_pct']:+.2f} %"
    readings = [md.value for md in at.markdown if md.value.startswith("- ")]
    assert readings == [f"- {summary['readings'][k]}" for k in ("gap", "dsr", "pbo")]

    figures = charts(at)
    equity = next(f for f in figures if f["layout"]["title"]["text"].startswith("Walk-forward equity"))
    assert [t["name"] for t in equity["data"]] == ["walk-forward", "buy & hold"]
    stored_run = runs_door.run(rt.db, state.run_id)
    assert stored_run is not None
    curve = stored_run["curve"]
    assert series(equity["data"][0]["y"]) == pytest.approx(curve["equity"])
    assert len(curve["equity"]) == len(state.result.equity)  # under 2,000 points: none dropped
    assert any(f["layout"]["title"]["text"] == "Optimization History Plot" for f in figures)

    windows = next(d.value for d in at.dataframe if "out-of-sample (UTC)" in d.value.columns)
    assert list(windows["window"].astype(str)) == ["1", "2", "final"]
    trials = next(d.value for d in at.dataframe if "trial" in d.value.columns)
    assert len(trials) == 6 and trials["objective"].is_monotonic_decreasing
    assert trials["objective"].iloc[0] == pytest.approx(summary["windows"][0]["in_sample_metrics"]["value"])
    compare = next(d.value for d in at.dataframe if "walk-forward return %" in d.value.index)
    assert list(compare.columns) == [state.run_id]

    # the chosen set becomes the paper trader's settings, checked as a whole configuration
    env_file = tmp_path / "settings.env"
    env_file.write_text("# mine\nUSER_ID=alice\n")
    monkeypatch.setattr(runtime, "ENV_FILE", env_file)
    restarts: list[int] = []
    monkeypatch.setattr(runtime, "restart_runtime", lambda: restarts.append(1))
    for name in ("STOP_LOSS_PCT", "POSITION_SIZING", "DECISION_MODEL", "ML_BUY_THRESHOLD_PCT"):
        monkeypatch.delenv(name, raising=False)
    next(b for b in at.button if b.label == "Use these parameters for paper trading").click().run()
    no_exception(at)
    assert restarts == [1]
    assert any(s.value.startswith("Saved to `.env`") for s in at.success)
    saved = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert saved["USER_ID"] == "alice" and saved["DECISION_MODEL"] == "logistic_regression"
    chosen = summary["chosen"]
    config = load_config(saved)
    assert config.risk.stop_loss_pct == pytest.approx(chosen["stop_loss_pct"], rel=1e-9)
    assert config.risk.sizing == chosen["sizing"]
    assert config.ml_buy_pct == pytest.approx(chosen["buy_pct"], rel=1e-9)
    assert config.risk.medium_confidence == pytest.approx(chosen["medium_confidence"], rel=1e-9)


def test_impossible_ranges_are_named_and_start_nothing(desk: Path) -> None:
    at = open_page()
    fill_form(at)
    widget(at.number_input, "Stop-loss %: low").set_value(6.0)  # above its high (5)
    widget(at.number_input, "Position % of equity: low").set_value(-5.0)
    submit(at)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert "**Stop-loss %** (`stop_loss_pct`): the range 6 to 5 is empty (its low is above its high)" in errors
    assert "**Position % of equity** (`position_pct`): -5 is not a size > 0 and <= 100 % of equity" in errors
    assert errors[-1] == "Nothing was started: fix the fields above."
    assert runtime.get_runtime().optimising is None


def test_too_little_history_says_how_much_is_needed(desk: Path) -> None:
    at = open_page()
    fill_form(at, bars=600)
    submit(at)
    job = runtime.get_runtime().optimising
    assert job is not None
    deadline = time.monotonic() + 60
    while job.running and time.monotonic() < deadline:  # the job ends on its own thread
        time.sleep(0.1)
    at.run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error.startswith("The optimisation failed: BTCUSDT: 600 bars are too few for 2 walk-forward windows")
    assert "bars in all (about" in error and "days of 1-minute bars)" in error
    assert runs_door.runs(runtime.get_runtime().db) == []
