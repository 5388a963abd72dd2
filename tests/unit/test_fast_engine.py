"""The fast engine's pieces that are not a backtest: its compiled rounding of sizes equals
``risk.floor_quantity`` (decimal, down, 8 significant digits of the shortest repr), and its tick
order is ``TickPlan.events``'s. The engine's trades are proven equal to backtrader's in
``tests/integration/test_engine_parity.py``."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.trading.backtest import TICK, TickPlan, _SymbolTicks
from pipeline.trading.fast_engine import events_of
from pipeline.trading.fast_loop import floor8
from pipeline.trading.risk import floor_quantity


@st.composite
def near_eight_digits(draw: st.DrawFn) -> float:
    """A float on or a few ulps beside an 8-significant-digit decimal: where rounding down in
    binary and in decimal part (0.29 is 0.28999999999999998 in binary)."""
    digits = draw(st.integers(10_000_000, 99_999_999))
    x = float(Decimal(digits).scaleb(draw(st.integers(-20, 12))))
    for _ in range(draw(st.integers(0, 3))):
        x = float(np.nextafter(x, np.inf if draw(st.booleans()) else -np.inf))
    return x


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.floats(1e-14, 1e15), near_eight_digits()))
@example(0.29)
@example(1e-5)
@example(99_999_999.5)
@example(1 / 3)
def test_the_compiled_rounding_is_risks_floor_quantity(x: float) -> None:
    assert floor8(x) == floor_quantity(x)


def test_the_compiled_rounding_defers_out_of_its_range_and_sizes_nothing_at_zero() -> None:
    assert floor8(1e-30) == -1.0 and floor8(1e40) == -1.0  # the engine rounds these in Python
    assert floor8(0.0) == 0.0 and floor8(-1.0) == 0.0 and floor8(float("nan")) == 0.0


def test_ticks_come_in_the_plans_order_across_symbols_with_gaps() -> None:
    rng = np.random.default_rng(0)
    symbols = []
    for k, starts in enumerate([np.array([0, 60, 120, 180]) * 1000, np.array([60, 180, 240]) * 1000]):
        times = starts[:, None] + rng.integers(0, 59_000, (len(starts), 4)).cumsum(axis=1) // 4
        prices = rng.uniform(1, 2, (len(starts), 4))
        none = np.zeros((len(starts), 4))
        symbols.append(
            _SymbolTicks(f"S{k}USDT", starts, times, prices, {"m": (none, none, none)}, none[..., None], none > 0)
        )
    slots = np.array([0, 60, 120, 180, 240]) * 1000
    plan = TickPlan(symbols, slots, "m", ())
    expected = [(e[1], e[2], e[3]) for slot in range(len(slots)) for e in plan.events(slot) if e[0] == TICK]
    events = events_of([(s.starts, s.times, s.prices) for s in symbols], slots)
    got = [(f"S{int(k)}USDT", int(t), float(p)) for k, t, p in zip(events.symbol, events.ts, events.price)]
    assert got == expected
    ends = np.flatnonzero(events.slot_end)
    assert len(ends) == len(slots) and ends[-1] == len(events) - 1
