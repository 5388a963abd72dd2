"""Walk-forward optimisation: the search space refuses impossible ranges by name, the windows roll
and say how much history they need, each winner is scored on the stretch after its own, the
out-of-sample stretches chain into one equity, and the same seed gives the same run."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset
from pipeline.ml.models import fit_predictor
from pipeline.trading.exchange import ExchangeSettings
from pipeline.trading.risk import RiskSettings
from pipeline.trading.search_space import (
    ENV_NAMES,
    OptimiseError,
    Range,
    SearchSpace,
    confirm_models,
    params_to_env,
    params_to_settings,
)
from pipeline.trading.walk_forward import (
    MIN_WINDOW_BARS,
    Evaluator,
    History,
    WalkForward,
    history_of,
    walk_forward,
    windows_of,
)

SYMBOL = "BTCUSDT"
MODELS = ("logistic_regression", "linear_regression")


def refusal(space: SearchSpace) -> str:
    with pytest.raises(OptimiseError) as caught:
        space.check(("logistic_regression", "svm"))
    return str(caught.value)


def test_an_empty_range_is_refused_with_the_parameter_named() -> None:
    message = refusal(SearchSpace(stop_loss_pct=Range(3.0, 2.0)))
    assert message == "stop_loss_pct: the range 3 to 2 is empty (its low is above its high)"


def test_a_stop_at_or_above_the_entry_and_negative_sizes_are_refused() -> None:
    message = refusal(SearchSpace(stop_loss_pct=Range(-1.0, 2.0), position_pct=Range(-5.0, 10.0)))
    assert "stop_loss_pct: -1 is not a stop under the entry and above zero: > 0 and < 100 %" in message
    assert "position_pct: -5 is not a size > 0 and <= 100 % of equity" in message
    assert "take_profit_pct: 0 is not a target above the entry" in refusal(SearchSpace(take_profit_pct=Range(0, 2)))
    assert refusal(SearchSpace(risk_pct=Range(0.5, 150.0))).startswith("risk_pct: 150 is not a risk > 0 and <= 100 %")
    assert refusal(SearchSpace(buy_pct=Range(-0.5, 1.0))).startswith("buy_pct: -0.5 is not a BUY threshold >= 0 %")


def test_a_high_confidence_under_the_medium_one_and_unknown_choices_are_refused() -> None:
    message = refusal(SearchSpace(medium_confidence=Range(0.7, 0.8), high_confidence=Range(0.5, 0.6)))
    assert message.startswith("high_confidence: its range (up to 0.6) lies under medium_confidence's (from 0.7)")
    assert refusal(SearchSpace(sizing=())) == "sizing: no sizing rule to try"
    assert refusal(SearchSpace(sizing=("martingale",))) == (
        "sizing: 'martingale' is not one of fixed_fraction, fixed_risk"
    )
    assert refusal(SearchSpace(confirm=("none", "svm+gpt"))) == (
        "confirm: gpt in 'svm+gpt' is not a model (logistic_regression, svm)"
    )


def test_an_empty_search_space_is_refused() -> None:
    fixed = {name: Range(r.low, r.low) for name, r in SearchSpace().ranges().items()}
    space = SearchSpace(**fixed, sizing=("fixed_fraction",), confirm=("none",))
    assert refusal(space) == ("the search space is empty: every range is a single value and every set has one choice")
    # one searched parameter is enough; the fixed ones are still passed to every trial
    one = dataclasses.replace(space, buy_pct=Range(0.01, 0.5))
    one.check()
    assert set(one.distributions()) == {"buy_pct"} and one.fixed()["stop_loss_pct"] == 0.5


def test_a_parameter_set_becomes_the_paper_traders_settings() -> None:
    params = {
        "buy_pct": 0.2,
        "sell_pct": -0.3,
        "medium_confidence": 0.7,
        "high_confidence": 0.65,  # under the medium one: raised to it
        "stop_loss_pct": 1.5,
        "take_profit_pct": 3.0,
        "trailing_stop_pct": 0.0,
        "position_pct": 20.0,
        "risk_pct": 2.0,
        "sizing": "fixed_risk",
        "confirm": "svm+logistic_regression",
    }
    buy, sell, risk, confirm = params_to_settings(params, RiskSettings(max_symbol_exposure_pct=40.0))
    assert (buy, sell, confirm) == (0.2, -0.3, ("svm", "logistic_regression"))
    assert risk.high_confidence == risk.medium_confidence == 0.7 and risk.max_symbol_exposure_pct == 40.0
    env = params_to_env(params)
    assert set(env) == set(ENV_NAMES.values())
    assert env["DECISION_CONFIRM_MODELS"] == "svm,logistic_regression" and env["DECISION_HIGH_CONFIDENCE"] == "0.7"
    assert env["POSITION_SIZING"] == "fixed_risk" and env["ML_SELL_THRESHOLD_PCT"] == "-0.3"
    assert params_to_env({**params, "confirm": "none"})["DECISION_CONFIRM_MODELS"] == "none"
    assert confirm_models("none") == () and confirm_models("svm") == ("svm",)


def test_the_windows_roll_by_one_out_of_sample_length_and_end_at_the_end() -> None:
    wf = WalkForward(windows=3, in_sample_ratio=2.0)
    windows = windows_of(5_000, wf)
    *walked, final = windows
    oos = 5_000 // 5
    assert [(w.is_end - w.is_first, w.oos_end - w.oos_first) for w in walked] == [(2 * oos, oos)] * 3
    for a, b in itertools.pairwise(walked):
        assert b.is_first - a.is_first == oos and b.oos_first == a.oos_end  # out-of-sample stretches chain
    assert all(w.oos_first == w.is_end for w in walked)  # each scored on the stretch right after its own
    assert walked[-1].oos_end == 5_000
    assert final.final and (final.is_first, final.is_end) == (5_000 - 2 * oos, 5_000)
    assert not windows_of(5_000, dataclasses.replace(wf, final=False))[-1].final


def test_too_little_history_says_how_much_is_needed() -> None:
    wf = WalkForward(windows=4, in_sample_ratio=3.0)
    need = wf.bars_needed()
    assert need >= 7 * MIN_WINDOW_BARS
    windows_of(need, wf)  # enough
    with pytest.raises(OptimiseError) as caught:
        windows_of(need - 10, wf)
    assert str(caught.value) == (
        f"{need - 10:,} bars of history are too few for 4 walk-forward windows of 3 in-sample to 1 out-of-sample "
        f"with at least {MIN_WINDOW_BARS} bars a stretch: they need at least {need:,} bars after the models' "
        "training (fewer windows or a shorter ratio need fewer)"
    )


def test_impossible_walk_forward_settings_are_refused_by_name() -> None:
    with pytest.raises(OptimiseError) as caught:
        WalkForward(trials=0, windows=0, in_sample_ratio=-1.0, objective="luck").check()  # type: ignore[arg-type]
    assert str(caught.value) == (
        "trials: 0 must be between 1 and 100,000; windows: 0 must be between 1 and 100; "
        "in_sample_ratio: -1 must be > 0 and <= 100; objective: 'luck' must be one of sharpe, return"
    )


@pytest.fixture(scope="module")
def history() -> History:
    train = bars_from_simulator(SYMBOL, 3_000, seed=1, end_ms=1_700_000_000_000)
    X, y, _ = make_dataset(train, 5)
    predictors = {(SYMBOL, m): fit_predictor(m, X.to_numpy(), y, 5) for m in MODELS}
    bars = bars_from_simulator(SYMBOL, 6_000, seed=2, end_ms=1_800_000_000_000)
    return history_of(SYMBOL, bars, predictors, model=MODELS[0], candidates=MODELS[1:])


SPACE = SearchSpace(buy_pct=Range(0.0, 0.1), sell_pct=Range(-0.1, 0.0), confirm=("none", MODELS[1]))


def test_each_winner_is_the_best_in_sample_trial_scored_on_the_next_stretch(history: History) -> None:
    wf = WalkForward(trials=12, windows=3, in_sample_ratio=2.0, seed=7)
    seen: list[float] = []
    result = walk_forward(
        history, SPACE, wf, base=RiskSettings(), exchange=ExchangeSettings(), progress=lambda f, m: seen.append(f)
    )
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 12 * 4  # every trial reported, in order
    assert len(result.windows) == 3 and result.final is not None and result.final.out_of_sample is None
    evaluator = Evaluator(history, RiskSettings(), ExchangeSettings(), "sharpe")
    for r in result.windows:
        assert len(r.trials) == 12
        assert r.in_sample["value"] == max(t["value"] for t in r.trials)
        w = r.window
        again = evaluator.run(r.best, w.oos_first, w.oos_end)  # the winner, on the stretch after its own
        assert r.out_of_sample is not None and again.metrics["return_pct"] == r.out_of_sample["return_pct"]
        assert r.oos_equity is not None and np.array_equal(again.equity, r.oos_equity)
    assert result.chosen == result.final.best
    assert sum(t["trades"] for r in result.windows for t in r.trials) > 0, "the trials must trade"


def test_the_out_of_sample_stretches_chain_into_one_equity_beside_buy_and_hold(history: History) -> None:
    wf = WalkForward(trials=6, windows=2, in_sample_ratio=2.0, final=False)
    exchange = ExchangeSettings(starting_balance=1_000.0)
    result = walk_forward(history, SPACE, wf, base=RiskSettings(), exchange=exchange)
    first, second = result.windows
    curve = result.equity
    n1 = first.window.oos_end - first.window.oos_first
    assert first.oos_equity is not None and second.oos_equity is not None
    assert len(curve) == n1 + second.window.oos_end - second.window.oos_first
    assert np.allclose(curve["equity"][:n1], first.oos_equity)
    assert np.allclose(curve["equity"][n1:], second.oos_equity * first.oos_equity[-1] / 1_000.0)
    assert result.out_of_sample["return_pct"] == pytest.approx((curve["equity"].iloc[-1] / 1_000.0 - 1) * 100)
    o = first.window.oos_first
    assert curve["buy_and_hold"].iloc[0] == pytest.approx(1_000.0 * 0.999 * history.close[o] / history.open[o])
    assert list(curve["start"]) == list(history.starts[o : second.window.oos_end])
    assert set(result.readings) == {"gap", "dsr", "pbo"} and all(result.readings.values())
    assert result.figures["gap"]["what"] == "Sharpe"


def test_the_same_seed_gives_the_same_run_and_another_seed_other_trials(history: History) -> None:
    wf = WalkForward(trials=5, windows=1, in_sample_ratio=3.0, final=False, seed=3)

    def run(seed: int) -> list[dict[str, object]]:
        r = walk_forward(
            history, SPACE, dataclasses.replace(wf, seed=seed), base=RiskSettings(), exchange=ExchangeSettings()
        )
        return [t["params"] for t in r.windows[0].trials]

    assert run(3) == run(3)
    assert run(3) != run(4)
