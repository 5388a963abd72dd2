"""The Signals page through AppTest: train from the page, see out-of-sample quality next to the
baselines, then live signals from the ml stage; and the Settings form that writes ``.env``."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import runtime
from pipeline.errors import ConfigError
from tests.ui.test_pages import APP, PAGES, no_exception, run_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def desk(built_runtimes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SIMULATOR_SEED", "11")
    monkeypatch.setenv("SIMULATOR_TICK_MS", "200")
    monkeypatch.setenv("SIMULATOR_HISTORY_MINUTES", "60")
    monkeypatch.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("STAGES", "simulator,market-store,ml,signal-store")
    monkeypatch.setenv("ML_HORIZON_BARS", "5")
    return tmp_path


def _dataframes_with(at: AppTest, column: str) -> list:
    return [d.value for d in at.dataframe if column in d.value.columns]


def test_train_on_the_page_then_quality_against_baselines_and_live_signals(desk: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGES["Signals"]).run()
    no_exception(at)
    assert [t.value for t in at.title] == ["Signals"]
    assert any("No trained model yet" in i.value for i in at.info)

    at.multiselect[0].set_value(["BTCUSDT"])
    at.multiselect[1].set_value(["logistic_regression", "random_forest"])
    at.radio[0].set_value("Simulator history")
    at.number_input[0].set_value(3000)
    at.button[0].click().run()  # the form's Train button
    no_exception(at)

    run_until(at, lambda a: any("Trained in" in s.value for s in a.success), "training to finish", 120)
    (done,) = [s.value for s in at.success if "Trained in" in s.value]
    assert "BTCUSDT logistic_regression v1" in done and "BTCUSDT random_forest v1" in done

    (quality,) = _dataframes_with(at, "best baseline")
    assert sorted(quality["model"]) == ["logistic_regression", "random_forest"]
    assert ((quality["accuracy"] > 0.3) & (quality["accuracy"] < 0.7)).all()  # a random walk: near chance
    assert quality["best baseline"].str.match(r"(persistence|always_up|ma_crossover) 0\.\d{3}").all()
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Direction accuracy vs baselines" in t for t in titles)
    assert any("Calibration of confidence" in t for t in titles)

    # the ml stage loads the new versions and publishes a signal per tick and model
    def has_signals(a: AppTest) -> bool:
        frames = _dataframes_with(a, "expected_change_pct")
        return bool(frames) and set(frames[0]["model"]) == {"logistic_regression", "random_forest"}

    run_until(at, has_signals, "live signals", 60)
    live = _dataframes_with(at, "expected_change_pct")[0]
    assert set(live["symbol"]) == {"BTCUSDT"}
    assert set(live["signal"]) <= {"BUY", "SELL", "HOLD"}
    assert ((live["confidence"] >= 0) & (live["confidence"] <= 1)).all()


def test_training_without_a_symbol_says_so_and_starts_nothing(desk: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGES["Signals"]).run()
    at.multiselect[0].set_value([])
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Cannot train: pick at least one symbol."]
    assert runtime.get_runtime().training is None


def test_settings_form_refuses_a_bad_symbol_and_writes_nothing(
    desk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text("# mine\nUSER_ID=alice\n")
    monkeypatch.setattr(runtime, "ENV_FILE", env_file)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGES["Settings"]).run()
    symbols = next(t for t in at.text_input if t.label.startswith("Symbols"))
    symbols.set_value("BTCUSDT,btc")
    next(b for b in at.button if b.label == "Save and restart the pipeline").click().run()
    (error,) = [e.value for e in at.error]
    assert error.startswith("Not saved: SYMBOLS has ['BTC']")
    assert env_file.read_text() == "# mine\nUSER_ID=alice\n"


def test_settings_form_writes_the_signal_thresholds_only_when_the_trader_changes_them(
    desk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # unset, the simulator's +-0.02 % mapping holds (docs/ml.md, "First start"): a save of other settings
    # must not write seed 001's +-1.5 % shown in the form, which would end it
    env_file = tmp_path / "settings.env"
    env_file.write_text("USER_ID=alice\n")
    monkeypatch.setattr(runtime, "ENV_FILE", env_file)
    restarts: list[bool] = []
    monkeypatch.setattr(runtime, "restart_runtime", lambda: restarts.append(True))  # one runtime for the test
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGES["Settings"]).run()
    no_exception(at)
    assert any("signals use +-0.02 %" in c.value for c in at.caption)
    save = next(b for b in at.button if b.label == "Save and restart the pipeline")
    save.click().run()
    no_exception(at)
    assert "ML_BUY_THRESHOLD_PCT" not in env_file.read_text() and "ML_SELL" not in env_file.read_text()
    assert "ML_HORIZON_BARS=5" in env_file.read_text()
    buy = next(n for n in at.number_input if n.label == "BUY above expected change %")
    assert buy.value == 1.5
    buy.set_value(0.5)
    next(b for b in at.button if b.label == "Save and restart the pipeline").click().run()
    no_exception(at)
    assert "ML_BUY_THRESHOLD_PCT=0.5\nML_SELL_THRESHOLD_PCT=-1.5\n" in env_file.read_text()
    assert restarts == [True, True]


def test_save_settings_keeps_other_lines_and_reports_what_the_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text("# mine\nUSER_ID=alice\nMARKET_SOURCE=simulator\n")
    monkeypatch.setattr(runtime, "ENV_FILE", env_file)
    monkeypatch.setenv("ML_BUY_THRESHOLD_PCT", "2")
    monkeypatch.delenv("MARKET_SOURCE", raising=False)
    overridden = runtime.save_settings({"MARKET_SOURCE": "bybit-ws", "ML_BUY_THRESHOLD_PCT": "1"})
    assert env_file.read_text() == "# mine\nUSER_ID=alice\nMARKET_SOURCE=bybit-ws\nML_BUY_THRESHOLD_PCT=1\n"
    assert overridden == ["ML_BUY_THRESHOLD_PCT"]
    with pytest.raises(ConfigError):
        runtime.save_settings({"MARKET_SOURCE": "coinbase"})
    assert "coinbase" not in env_file.read_text()
