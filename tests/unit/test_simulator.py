from __future__ import annotations

import numpy as np

from pipeline.messages import MarketData, check_fresh
from pipeline.sources.simulator import MarketSimulator

START = 1_800_000_000_000


def test_same_seed_same_prices_and_messages_pass_the_seed_rules() -> None:
    a = MarketSimulator(("BTCUSDT", "XRPUSDT"), seed=3).history(START, 60)
    b = MarketSimulator(("BTCUSDT", "XRPUSDT"), seed=3).history(START, 60)
    c = MarketSimulator(("BTCUSDT", "XRPUSDT"), seed=4).history(START, 60)
    assert a == b and a != c
    assert all(isinstance(t, MarketData) and t.low <= t.price <= t.high for t in a)
    live = MarketSimulator(("ETHUSDT",), seed=1).tick(START)
    check_fresh(live[0], START)


def test_realistic_levels_and_volatility_clustering() -> None:
    sim = MarketSimulator(("BTCUSDT",), seed=11)
    prices = np.array([t.price for t in sim.history(START, 7 * 24 * 60, step_s=60)])
    assert 30_000 < prices[0] < 140_000
    r = np.diff(np.log(prices))
    assert abs(r.mean()) < 5 * r.std() / np.sqrt(len(r))  # no drift to speak of
    sq = r**2 - (r**2).mean()
    autocorr = (sq[1:] * sq[:-1]).mean() / sq.var()
    assert autocorr > 0.05  # squared returns cluster (GARCH); an i.i.d. walk gives ~0
    ann = r.std() * np.sqrt(365 * 24 * 60)
    assert 0.2 < ann < 1.5
