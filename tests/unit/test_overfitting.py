"""The overfitting figures: the deflated Sharpe ratio against the paper's worked example and a
simulation, and CSCV's probability of backtest overfitting on searches whose answer is known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pipeline.trading.overfitting import (
    cscv,
    deflated_sharpe,
    deflated_sharpe_ratio,
    dsr_reading,
    expected_max_sharpe,
    gap_reading,
    pbo_reading,
    sharpe,
)


def test_sharpe_is_mean_over_sample_deviation_and_zero_without_variation() -> None:
    assert sharpe(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0 / 1.0)
    assert sharpe(np.array([0.5, 0.5, 0.5])) == 0.0
    assert sharpe(np.array([1.0])) == 0.0


def test_the_expected_best_sharpe_of_skill_less_trials_matches_a_simulation() -> None:
    rng = np.random.default_rng(0)
    for n in (10, 100, 1000):
        simulated = rng.standard_normal((4000, n)).max(axis=1).mean()
        assert expected_max_sharpe(n, 1.0) == pytest.approx(simulated, abs=0.05)
    assert expected_max_sharpe(1, 1.0) == 0.0
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * expected_max_sharpe(100, 1.0))


def test_the_deflated_sharpe_ratio_of_the_papers_worked_example() -> None:
    """Bailey and López de Prado (2014): an annualised Sharpe of 2.5 over 1,250 daily returns with
    skewness -3 and kurtosis 10, the best of 100 trials whose annualised Sharpe ratios vary by 0.5,
    has a DSR of about 0.90."""
    days = 250
    dsr = deflated_sharpe_ratio(2.5 / math.sqrt(days), 1250, -3.0, 10.0, 100, 0.5 / days)
    assert dsr == pytest.approx(0.9004, abs=0.001)
    # more trials, more luck to explain the same Sharpe: less evidence
    more = deflated_sharpe_ratio(2.5 / math.sqrt(days), 1250, -3.0, 10.0, 10_000, 0.5 / days)
    assert dsr is not None and more is not None and more < dsr
    assert deflated_sharpe_ratio(0.1, 1, 0.0, 3.0, 10, 0.01) is None


def test_the_best_of_many_noise_trials_is_not_deflated_into_significance() -> None:
    rng = np.random.default_rng(1)
    trials = rng.normal(0.0, 0.01, (500, 200))
    sharpes = np.array([sharpe(trials[:, k]) for k in range(200)])
    best = trials[:, int(np.argmax(sharpes))]
    assert sharpe(best) > 0.1  # looks good on its own
    dsr = deflated_sharpe(best, sharpes)
    assert dsr is not None and dsr < 0.95
    # a real edge, found among the same noise, is
    edge = rng.normal(0.004, 0.01, 500)
    found = deflated_sharpe(edge, np.append(sharpes, sharpe(edge)))
    assert found is not None and found > 0.95
    assert deflated_sharpe(np.zeros(500), sharpes) is None  # a winner that never traded


def test_pbo_is_about_one_half_for_a_search_over_noise() -> None:
    rng = np.random.default_rng(2)
    values = [cscv(rng.normal(0.0, 0.01, (320, 50)), blocks=8).pbo for _ in range(8)]  # type: ignore[union-attr]
    assert 0.3 < float(np.mean(values)) < 0.7


def test_pbo_is_zero_when_one_trial_is_better_everywhere() -> None:
    rng = np.random.default_rng(3)
    m = rng.normal(0.0, 0.01, (320, 30))
    m[:, 7] += 0.01
    result = cscv(m, blocks=8)
    assert result is not None and result.pbo == 0.0 and result.splits == math.comb(8, 4) and result.blocks == 8


def test_pbo_is_one_when_the_best_in_sample_is_always_the_worst_out_of_sample() -> None:
    """Trial k gains in exactly the blocks of the k-th half and loses in the others: whichever half
    is called in-sample, the trial fitted to it is the one that loses everywhere else."""
    blocks = 6
    halves = list(itertools.combinations(range(blocks), blocks // 2))
    rng = np.random.default_rng(4)
    m = rng.normal(0.0, 0.001, (blocks * 20, len(halves)))
    for k, half in enumerate(halves):
        for b in range(blocks):
            m[b * 20 : (b + 1) * 20, k] += 0.01 if b in half else -0.01
    result = cscv(m, blocks=blocks)
    assert result is not None and result.pbo == 1.0


def test_cscv_needs_two_trials_and_enough_periods() -> None:
    assert cscv(np.zeros((100, 1))) is None
    noise = np.random.default_rng(6).normal(0.0, 0.01, (8, 5))
    assert cscv(noise[:7]) is None
    assert cscv(noise) is not None
    # trials that all did the same (none traded): nothing was picked, so nothing is overfit
    assert cscv(np.zeros((100, 5))) is None


def test_each_figure_has_a_one_line_reading() -> None:
    assert "did not carry over" in gap_reading(2.0, -0.5, "Sharpe")
    assert "trust the out-of-sample one" in gap_reading(2.0, 0.5, "Sharpe")
    assert "keeps most" in gap_reading(2.0, 1.5, "Sharpe")
    assert "no edge even in-sample" in gap_reading(0.0, 0.0, "Sharpe")
    assert "no evidence of skill" in dsr_reading(0.4, 200) and "200 trials" in dsr_reading(0.4, 200)
    assert "stays above" in dsr_reading(0.97, 200)
    rng = np.random.default_rng(5)
    noise = cscv(rng.normal(0.0, 0.01, (320, 50)), blocks=8)
    assert pbo_reading(noise).startswith(f"Probability of backtest overfitting {noise.pbo:.2f}: in ")  # type: ignore[union-attr]
    for line in (gap_reading(None, None, "Sharpe"), dsr_reading(None, 5), pbo_reading(None)):
        assert "\n" not in line and line.endswith(".")
