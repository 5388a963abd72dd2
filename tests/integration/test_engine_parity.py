"""The fast engine makes backtrader's trades: on random configurations and series (Hypothesis), the
same orders (ids, sides, times, sizes, prices, confirmations, caps), the same fills, exits and exit
reasons, the same P&L, cash, fees, equity at every bar and reasons for every signal that made no
order, to the bit (so to the cent).

Each example draws risk and exchange settings (stops, targets, trailing, both sizings, exposure
caps, minimum orders, fees, slippage, confidence levels), signal thresholds, one to three symbols
with their own gaps, flat stretches, price jumps through stops, bars a few milliseconds apart
(ticks on the same millisecond), and each model's predictions, with confidences on the edges of
the levels. The predictions come from ``Scripted``, which hands out predictions drawn beforehand
in row order: the engines are under test here, not the models (``tests/integration/
test_trading_parity.py`` runs real models live and in a backtest).

``PARITY_EXAMPLES`` sets how many examples run (200 by default). Hypothesis shrinks a failing
example to a small ``Scenario`` and prints it; each such case goes into ``EDGES``, which runs on
every test run whatever the random draw. ``EDGES`` starts with a hand-picked case for each rule
that is easy to miss (none of the random examples has failed so far).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.trading.backtest import prepare, simulate
from pipeline.trading.exchange import Book, ExchangeSettings
from pipeline.trading.risk import RiskSettings
from pipeline.trading.strategy import Desk

EXAMPLES = int(os.environ.get("PARITY_EXAMPLES", "200"))
MODELS = ("random_forest", "logistic_regression", "svm")
T0 = 1_731_715_200_000
MINUTE = 60_000


class Scripted:
    """Predictions drawn beforehand, handed out in row order: (expected log return, confidence)."""

    def __init__(self, expected: np.ndarray, confidence: np.ndarray) -> None:
        self.expected, self.confidence, self.at = expected, confidence, 0

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(X)
        assert self.at + n <= len(self.expected), "more rows than were scripted"
        out = self.expected[self.at : self.at + n], self.confidence[self.at : self.at + n]
        self.at += n
        return out


@dataclass(frozen=True)
class Scenario:
    seed: int
    symbols: int = 1
    bars: int = 120
    spacing: str = "regular"  # regular, gaps (missing minutes), tight (bars milliseconds apart)
    flat: int = 1  # flat stretches per symbol
    jumps: int = 1  # price jumps per symbol
    volatility: float = 0.004
    confirm: int = 0  # confirming models
    buy_pct: float = 0.05
    sell_pct: float = -0.05
    edge_share: float = 0.3  # predictions whose confidence sits on a level's edge
    stop_loss_pct: float = 2.0
    take_profit_pct: float = 5.0
    trailing_stop_pct: float = 0.0
    sizing: str = "fixed_fraction"
    position_pct: float = 10.0
    risk_pct: float = 1.0
    max_symbol_exposure_pct: float = 25.0
    max_total_exposure_pct: float = 100.0
    min_order_usdt: float = 10.0
    medium_confidence: float = 0.6
    high_confidence: float = 0.8
    starting_balance: float = 10_000.0
    fee_bps: float = 10.0
    slippage_bps: float = 5.0

    def risk(self) -> RiskSettings:
        names = {f.name for f in fields(RiskSettings)}
        return RiskSettings(**{k: getattr(self, k) for k in names})

    def exchange(self) -> ExchangeSettings:
        return ExchangeSettings(
            starting_balance=self.starting_balance, fee_bps=self.fee_bps, slippage_bps=self.slippage_bps
        )


def pct(low: float, high: float) -> st.SearchStrategy[float]:
    """A percentage: round values and the bounds as often as arbitrary ones."""
    return st.one_of(
        st.sampled_from([low, high, round((low + high) / 2, 2)]),
        st.floats(low, high, allow_nan=False).map(lambda x: round(x, 4)).filter(lambda x: low <= x <= high),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    medium = draw(st.sampled_from([0.6, 0.55, 0.65, 0.7]))
    high = draw(st.sampled_from([0.8, medium, 0.75, 0.9, 1.0]))
    return Scenario(
        seed=draw(st.integers(0, 2**32 - 1)),
        symbols=draw(st.integers(1, 3)),
        bars=draw(st.integers(30, 160)),
        spacing=draw(st.sampled_from(["regular", "gaps", "tight"])),
        flat=draw(st.integers(0, 3)),
        jumps=draw(st.integers(0, 3)),
        volatility=draw(st.sampled_from([0.0005, 0.002, 0.004, 0.01, 0.03])),
        confirm=draw(st.integers(0, 2)),
        buy_pct=draw(st.sampled_from([0.0, 0.01, 0.05, 0.2, 1.0])),
        sell_pct=-draw(st.sampled_from([0.0, 0.01, 0.05, 0.2, 1.0])),
        edge_share=draw(st.sampled_from([0.0, 0.3, 0.8])),
        stop_loss_pct=draw(pct(0.05, 10.0)),
        take_profit_pct=draw(pct(0.05, 10.0)),
        trailing_stop_pct=draw(st.one_of(st.just(0.0), pct(0.05, 5.0))),
        sizing=draw(st.sampled_from(["fixed_fraction", "fixed_risk"])),
        position_pct=draw(pct(0.5, 100.0)),
        risk_pct=draw(pct(0.1, 50.0)),
        max_symbol_exposure_pct=draw(pct(1.0, 100.0)),
        max_total_exposure_pct=draw(pct(1.0, 100.0)),
        min_order_usdt=draw(st.sampled_from([0.0, 10.0, 10.0, 500.0, 5_000.0])),
        medium_confidence=medium,
        high_confidence=high,
        starting_balance=draw(st.sampled_from([100.0, 10_000.0, 10_000.0, 1_234_567.89])),
        fee_bps=draw(st.sampled_from([0.0, 10.0, 75.0])),
        slippage_bps=draw(st.sampled_from([0.0, 5.0, 40.0])),
    )


def make_bars(s: Scenario, rng: np.random.Generator, k: int) -> pd.DataFrame:
    """One symbol's candles: a random walk with flat stretches and jumps, spaced per ``s.spacing``."""
    n = s.bars
    steps = rng.normal(0.0, s.volatility, n)
    for _ in range(s.jumps):
        steps[rng.integers(n)] += rng.choice([-1, 1]) * rng.uniform(0.02, 0.1)
    close = 50.0 * (k + 1) * np.exp(np.cumsum(steps))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = rng.uniform(0.0, s.volatility, (2, n))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    for _ in range(s.flat):
        a = int(rng.integers(n))
        b = min(n, a + int(rng.integers(3, 40)))
        level = close[a]
        close[a:b] = open_[a:b] = high[a:b] = low[a:b] = level
        if b < n:
            open_[b] = level
            high[b], low[b] = max(high[b], level), min(low[b], level)
    if s.spacing == "regular":
        gaps = np.full(n, MINUTE)
    elif s.spacing == "gaps":
        gaps = rng.choice([MINUTE, MINUTE, MINUTE, 2 * MINUTE, 7 * MINUTE], n)
    else:
        gaps = rng.choice([1, 2, 3, 5, MINUTE], n)
    start = T0 + np.cumsum(gaps) - gaps[0] + int(rng.integers(0, 3)) * MINUTE
    return pd.DataFrame(
        {"start": start.astype(np.int64), "open": open_, "high": high, "low": low, "close": close, "volume": 1.0}
    )


def scripted(s: Scenario, rng: np.random.Generator, rows: int) -> Scripted:
    """Predictions around the thresholds, confidences often exactly on (or a hair under) a level."""
    scale = max(abs(s.buy_pct), abs(s.sell_pct), 0.02) * 2
    change = rng.normal(0.0, scale, rows)
    on_edge = rng.random(rows) < 0.1
    change[on_edge] = rng.choice([s.buy_pct, s.sell_pct], int(on_edge.sum()))
    confidence = rng.uniform(0.5, 1.0, rows)
    edges = np.array(
        [
            s.medium_confidence,
            s.high_confidence,
            np.nextafter(s.medium_confidence, 0.0),
            np.nextafter(s.high_confidence, 0.0),
            1.0,
            0.5,
        ]
    )
    pick = rng.random(rows) < s.edge_share
    confidence[pick] = rng.choice(edges, int(pick.sum()))
    return Scripted(np.log1p(change / 100.0), confidence)


def book_state(b: Book) -> tuple[object, ...]:
    return (
        b.status,
        b.fill_price,
        b.fill_fee,
        b.filled_at,
        b.exit_price,
        b.exit_fee,
        b.closed_at,
        b.exit_reason,
        b.exit_order_id,
        b.reason,
        b.stop,
        b.take_profit,
        b.trailing_pct,
        b.high,
        b.closes,
    )


def order_fields(book: Book) -> dict[str, object]:
    o = book.order
    meta = {k: v for k, v in o.metadata.items() if k != "created_by"}
    return {**o.model_dump(exclude={"metadata"}), "metadata": meta}


def run_both(s: Scenario) -> tuple[tuple, tuple]:
    rng = np.random.default_rng(s.seed)
    names = [f"SYM{chr(65 + k)}USDT" for k in range(s.symbols)]
    bars = {name: make_bars(s, rng, k) for k, name in enumerate(names)}
    models = MODELS[: 1 + s.confirm]
    predictors = {(name, m): scripted(s, rng, 4 * s.bars) for name in names for m in models}
    risk = s.risk()
    plan, clock = prepare(
        bars,
        predictors,
        model=models[0],
        confirm_models=models[1:],
        buy_pct=s.buy_pct,
        sell_pct=s.sell_pct,
        medium_confidence=risk.medium_confidence,
    )
    out = []
    for engine in ("fast", "backtrader"):
        desk, equity, exposed = simulate(plan, clock, engine=engine, risk=risk, exchange=s.exchange())
        out.append((desk, equity, exposed))
    return out[0], out[1]


def assert_same_trades(s: Scenario) -> Desk:
    """Run both engines on ``s``; assert they agree; return backtrader's desk."""
    (fast, fast_equity, fast_exposed), (slow, slow_equity, slow_exposed) = run_both(s)
    fx, sx = fast.exchange, slow.exchange
    assert [o.order_id for o in fast.orders] == [o.order_id for o in slow.orders]
    assert list(fx.books) == list(sx.books)
    for oid, want in sx.books.items():
        got = fx.books[oid]
        assert order_fields(got) == order_fields(want), oid
        assert book_state(got) == book_state(want), oid
    pnl = [round(b.pnl, 2) for b in sx.books.values() if b.status == "CLOSED"]
    assert [round(b.pnl, 2) for b in fx.books.values() if b.status == "CLOSED"] == pnl  # to the cent
    assert (fx.cash, fx.fees_paid, fx.realized) == (sx.cash, sx.fees_paid, sx.realized)
    assert fast_equity.tolist() == slow_equity.tolist()
    assert fast_exposed.tolist() == slow_exposed.tolist()
    assert dict(fast.skipped) == {k: n for k, n in slow.skipped.items() if n}
    assert fx.last == sx.last
    return slow


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_the_fast_engine_makes_backtraders_trades(s: Scenario) -> None:
    desk = assert_same_trades(s)
    # what the example exercised, in the statistics (--hypothesis-show-statistics)
    books = desk.exchange.books.values()
    event(f"orders: {'none' if not desk.orders else '1-9' if len(desk.orders) < 10 else '10+'}")
    for b in books:
        event(f"{b.order.action} {b.status}" + (f" by {b.exit_reason}" if b.exit_reason else ""))
        if b.order.metadata.get("confirmed_by"):
            event(f"confirmed by {'a model' if b.order.metadata['confirmed_by'] != 'indicator' else 'indicator'}")
        if b.order.metadata.get("capped_by"):
            event(f"capped by {b.order.metadata['capped_by']}")
    for reason in desk.skipped:
        event(f"skipped: {reason}")


def _books(desk: Desk, action: str, status: str, reason: str | None = None) -> int:
    return sum(
        1
        for b in desk.exchange.books.values()
        if (b.order.action, b.status) == (action, status) and (reason is None or b.exit_reason == reason)
    )


# (case, what it must exercise)
EDGES: list[tuple[Scenario, Callable[[Desk], bool]]] = [
    # a BUY sized to the cash, filled a tick later at a higher price: cancelled for cash
    (
        Scenario(seed=3, position_pct=100.0, max_symbol_exposure_pct=100.0, fee_bps=75.0, slippage_bps=40.0),
        lambda d: _books(d, "BUY", "CANCELLED") > 0,
    ),
    # bars milliseconds apart: a SELL waits for a later millisecond while the stop closes the position
    (
        Scenario(seed=1, spacing="tight", volatility=0.03, take_profit_pct=0.5, bars=160),
        lambda d: _books(d, "SELL", "CANCELLED") > 0,
    ),
    # three symbols with their own gaps, two confirming models, fixed risk capped by exposure
    (
        Scenario(seed=7, symbols=3, spacing="gaps", confirm=2, sizing="fixed_risk", risk_pct=50.0, edge_share=0.8),
        lambda d: (
            {"logistic_regression", "svm", "indicator"}
            <= {b.order.metadata.get("confirmed_by") for b in d.exchange.books.values()}
        ),
    ),
    # a trailing stop on a volatile walk; the high and medium levels equal
    (
        Scenario(seed=11, trailing_stop_pct=0.3, volatility=0.01, medium_confidence=0.7, high_confidence=0.7),
        lambda d: _books(d, "BUY", "CLOSED", "trailing_stop") > 0,
    ),
    # two symbols under a 10 % total cap and a 500 USDT minimum: entries refused for the cap
    (
        Scenario(seed=1, symbols=2, min_order_usdt=500.0, max_total_exposure_pct=10.0),
        lambda d: d.skipped.get("no size: total exposure", 0) > 0,
    ),
]


@pytest.mark.parametrize("scenario, exercises", EDGES)
def test_the_engines_agree_where_the_rules_have_edges(scenario: Scenario, exercises: Callable[[Desk], bool]) -> None:
    assert exercises(assert_same_trades(scenario))


def test_the_comparison_catches_a_difference() -> None:
    """The property is not vacuous: a run with another fee gives other fills, and the check says so."""
    s = Scenario(seed=3)
    (fast, *_), _ = run_both(s)
    (other, *_), _ = run_both(Scenario(seed=3, fee_bps=11.0))
    assert fast.orders and [o.order_id for o in fast.orders] == [o.order_id for o in other.orders]
    differ = [oid for oid, b in fast.exchange.books.items() if book_state(b) != book_state(other.exchange.books[oid])]
    assert differ and not math.isclose(fast.exchange.cash, other.exchange.cash)
