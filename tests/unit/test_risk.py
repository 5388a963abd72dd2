"""The risk rules at their edges: sizing, caps, rounding of quantities, brackets, settings and the
confidence/confirmation rules (pure functions of ``pipeline.trading.risk``)."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import ConfigError
from pipeline.trading.risk import (
    QUANTITY_DIGITS,
    RiskSettings,
    actionable,
    brackets,
    confidence_level,
    floor_quantity,
    indicator_confirms,
    size_entry,
)

WIDE: dict[str, Any] = dict(max_symbol_exposure_pct=100.0, max_total_exposure_pct=100.0)


def _size(
    price: float,
    stop: float | None = None,
    *,
    equity: float = 10_000.0,
    cash: float = 10_000.0,
    symbol_exposure: float = 0.0,
    total_exposure: float = 0.0,
    settings: RiskSettings | None = None,
    cost_rate: float = 0.0,
):
    settings = settings or RiskSettings()
    if stop is None:
        stop = brackets(price, settings)[0] if price > 0 and math.isfinite(price) else 1.0
    return size_entry(
        price,
        stop,
        equity=equity,
        cash=cash,
        symbol_exposure=symbol_exposure,
        total_exposure=total_exposure,
        settings=settings,
        cost_rate=cost_rate,
    )


def _digits(q: float) -> int:
    """Significant digits of ``q`` as Python prints it (the shortest repr that round-trips)."""
    return len(Decimal(repr(q)).normalize().as_tuple().digits)


# -- size_entry -------------------------------------------------------------------------------------


def test_fixed_fraction_buys_the_position_share_of_equity() -> None:
    d = _size(100.0, equity=20_000.0, cash=20_000.0, settings=RiskSettings(position_pct=10.0))
    assert d.reason is None and d.capped_by is None
    assert d.quantity == pytest.approx(20.0)
    assert d.notional == pytest.approx(2_000.0)
    assert d.quantity * 100.0 <= 2_000.0 + 1e-9


def test_fixed_risk_loses_risk_pct_of_equity_at_the_stop() -> None:
    settings = RiskSettings(sizing="fixed_risk", risk_pct=1.0, **WIDE)
    price, stop = 250.0, 245.0
    d = _size(price, stop, equity=10_000.0, cash=10_000.0, settings=settings)
    assert d.reason is None and d.capped_by is None
    assert d.quantity * (price - stop) == pytest.approx(10_000.0 * 1.0 / 100.0, rel=1e-7)
    assert d.quantity * (price - stop) <= 100.0 + 1e-9  # never a larger loss than allowed
    # a wider stop makes a smaller position with the same risk
    wider = _size(price, 200.0, equity=10_000.0, cash=10_000.0, settings=settings)
    assert wider.quantity < d.quantity
    assert wider.quantity * (price - 200.0) == pytest.approx(100.0, rel=1e-7)


def test_capped_by_the_room_left_under_the_symbol_exposure() -> None:
    settings = RiskSettings(position_pct=20.0, max_symbol_exposure_pct=25.0)
    d = _size(10.0, equity=10_000.0, cash=10_000.0, symbol_exposure=1_000.0, total_exposure=1_000.0, settings=settings)
    assert d.capped_by == "symbol exposure"
    assert d.notional == pytest.approx(1_500.0)  # 25 % of 10,000 minus the 1,000 held
    assert d.quantity == pytest.approx(150.0)


def test_capped_by_the_room_left_under_the_total_exposure() -> None:
    settings = RiskSettings(position_pct=20.0, max_symbol_exposure_pct=50.0, max_total_exposure_pct=60.0)
    d = _size(10.0, equity=10_000.0, cash=10_000.0, symbol_exposure=0.0, total_exposure=5_000.0, settings=settings)
    assert d.capped_by == "total exposure"
    assert d.notional == pytest.approx(1_000.0)
    assert d.quantity == pytest.approx(100.0)


def test_capped_by_the_cash_with_room_for_costs() -> None:
    settings = RiskSettings(position_pct=50.0, **WIDE)
    d = _size(10.0, equity=10_000.0, cash=1_000.0, settings=settings, cost_rate=0.0015)
    assert d.capped_by == "cash"
    assert d.notional == pytest.approx(1_000.0 / 1.0015, rel=1e-7)
    assert d.notional <= 1_000.0 / 1.0015
    assert d.quantity * 10.0 <= 1_000.0 / 1.0015


def test_no_cash_gives_no_order_and_names_the_minimum() -> None:
    d = _size(10.0, cash=0.0)
    assert d.quantity == 0.0
    assert d.capped_by == "cash"
    assert d.reason is not None and "minimum order" in d.reason and "cash" in d.reason


def test_an_order_under_the_minimum_notional_is_not_made() -> None:
    settings = RiskSettings(position_pct=1.0, min_order_usdt=10.0)
    d = _size(10.0, equity=900.0, cash=900.0, settings=settings)  # 1 % of 900 = 9 USDT
    assert d.quantity == 0.0
    assert d.reason is not None and "minimum order" in d.reason and "10" in d.reason
    # exactly the minimum is enough
    ok = _size(10.0, equity=1_000.0, cash=1_000.0, settings=settings)
    assert ok.quantity == pytest.approx(1.0) and ok.reason is None


@pytest.mark.parametrize("price", [1e-8, 3e-8, 1.23456789e-8, 1e7, 1.23456789e7, 9.87654321e6, 0.0123456789])
def test_tiny_and_huge_prices_keep_eight_significant_digits_rounded_down(price: float) -> None:
    d = _size(price, equity=10_000.0, cash=10_000.0)
    wanted = 1_000.0 / price
    assert d.reason is None
    assert d.quantity > 0
    assert _digits(d.quantity) <= QUANTITY_DIGITS
    assert d.quantity <= wanted  # never rounded up
    assert d.quantity * price <= 1_000.0 * (1 + 1e-15)
    assert d.quantity >= wanted * (1 - 10.0 ** -(QUANTITY_DIGITS - 1))  # only the digits past the 8th go


def test_an_entry_never_costs_more_than_its_sized_notional() -> None:
    # 1,000 USDT / 810.0000008106562 = 1.234567899999: the 8-digit quantity must be 1.2345678
    price = 810.0000008106562
    d = _size(price, equity=10_000.0, cash=10_000.0)
    assert d.quantity * price <= 1_000.0
    assert d.notional <= 1_000.0


@pytest.mark.parametrize("price", [0.0, -5.0, math.nan, math.inf, -math.inf])
def test_a_price_that_is_not_a_positive_number_sizes_nothing(price: float) -> None:
    for sizing in ("fixed_fraction", "fixed_risk"):
        d = size_entry(
            price,
            1.0,
            equity=10_000.0,
            cash=10_000.0,
            symbol_exposure=0.0,
            total_exposure=0.0,
            settings=RiskSettings(sizing=sizing),
        )
        assert d.quantity == 0.0 and d.notional == 0.0
        assert d.reason is not None and "price" in d.reason


@pytest.mark.parametrize("stop", [100.0, 101.0])
def test_fixed_risk_needs_the_stop_under_the_price(stop: float) -> None:
    d = size_entry(
        100.0,
        stop,
        equity=10_000.0,
        cash=10_000.0,
        symbol_exposure=0.0,
        total_exposure=0.0,
        settings=RiskSettings(sizing="fixed_risk"),
    )
    assert d.quantity == 0.0
    assert d.reason is not None and "stop" in d.reason


def test_no_equity_sizes_nothing() -> None:
    d = _size(10.0, equity=0.0, cash=0.0)
    assert d.quantity == 0.0 and d.reason is not None and "equity" in d.reason


# -- floor_quantity -------------------------------------------------------------------------------


def test_floor_quantity_never_rounds_up() -> None:
    rng = random.Random(20240601)
    ups = []
    for _ in range(200_000):
        q = 10.0 ** rng.uniform(-9, 9)
        f = floor_quantity(q)
        assert f >= 0
        if f > q:
            ups.append((q, f))
    assert not ups, f"{len(ups)} rounded up, e.g. floor_quantity({ups[0][0]!r}) = {ups[0][1]!r}"


def test_floor_quantity_does_not_round_up_just_under_a_step() -> None:
    # 12 significant digits just under 1.2345679: the 8-digit floor is 1.2345678
    assert floor_quantity(1.234567899999) == 1.2345678
    assert floor_quantity(299.8478199999992) == 299.84781


def test_floor_quantity_keeps_eight_significant_digits() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        q = 10.0 ** rng.uniform(-9, 9)
        f = floor_quantity(q)
        assert _digits(f) <= QUANTITY_DIGITS, (q, f)
        assert f >= q * (1 - 1e-7) * (1 - 1e-12), (q, f)  # drops only what is past the 8th digit
    assert floor_quantity(1.23456789123) == 1.2345678
    assert floor_quantity(123456789.9) == 123456780.0
    assert floor_quantity(0.000123456789) == 0.00012345678


@pytest.mark.parametrize("q", [0.29, 0.1, 0.3, 1.1, 2.675, 0.07, 1e-8, 12345678.0, 0.12345678])
def test_floor_quantity_keeps_exact_decimals(q: float) -> None:
    assert floor_quantity(q) == q
    assert repr(floor_quantity(q)) == repr(q)


def test_floor_quantity_of_nothing_is_zero() -> None:
    for q in (0.0, -1.0, math.nan, math.inf):
        assert floor_quantity(q) == 0.0


# -- brackets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("price", [1e-8, 0.5, 100.0, 68_000.5, 1e7])
def test_brackets_put_the_stop_under_and_the_target_over_the_price(price: float) -> None:
    stop, take = brackets(price, RiskSettings())
    assert stop < price < take
    assert stop == pytest.approx(price * 0.98)
    assert take == pytest.approx(price * 1.05)
    stop, take = brackets(price, RiskSettings(stop_loss_pct=10.0, take_profit_pct=1.0))
    assert stop == pytest.approx(price * 0.9) and take == pytest.approx(price * 1.01)


def test_seed_defaults() -> None:
    s = RiskSettings()
    assert (s.stop_loss_pct, s.take_profit_pct, s.sizing) == (2.0, 5.0, "fixed_fraction")


# -- RiskSettings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stop_loss_pct", 0.0),
        ("stop_loss_pct", 100.0),
        ("stop_loss_pct", -1.0),
        ("take_profit_pct", -1.0),
        ("take_profit_pct", 0.0),
        ("position_pct", 0.0),
        ("position_pct", 100.5),
        ("risk_pct", 0.0),
        ("max_symbol_exposure_pct", 0.0),
        ("max_total_exposure_pct", 101.0),
        ("trailing_stop_pct", 100.0),
        ("trailing_stop_pct", -1.0),
        ("min_order_usdt", -1.0),
        ("sizing", "kelly"),
    ],
)
def test_risk_settings_refuse_bad_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        RiskSettings(**{field: value})
    assert field in str(err.value)


def test_risk_settings_accept_their_edges_and_size_with_them() -> None:
    edges: dict[str, Any] = {
        "position_pct": 100.0,
        "risk_pct": 100.0,
        "max_symbol_exposure_pct": 100.0,
        "max_total_exposure_pct": 100.0,
        "trailing_stop_pct": 0.0,
        "min_order_usdt": 0.0,
        "stop_loss_pct": 99.9,
    }
    risk = RiskSettings(**edges, sizing="fixed_risk")
    assert {k: getattr(risk, k) for k in edges} == edges
    # a 99.9 % stop sits at a thousandth of the price
    stop, take = brackets(100.0, risk)
    assert stop == pytest.approx(0.1) and take == pytest.approx(105.0)
    # risking 100 % of 1,000 USDT over 99.9 USDT a unit wants 1,001 USDT: the 100 % symbol cap leaves 1,000
    d = size_entry(100.0, stop, equity=1_000.0, cash=1_000.0, symbol_exposure=0.0, total_exposure=0.0, settings=risk)
    assert (d.quantity, d.capped_by, d.reason) == (10.0, "symbol exposure", None)
    # 100 % of equity as a fixed fraction is the whole equity, with nothing capping it
    whole = size_entry(
        100.0,
        stop,
        equity=1_000.0,
        cash=1_000.0,
        symbol_exposure=0.0,
        total_exposure=0.0,
        settings=RiskSettings(**edges),
    )
    assert (whole.quantity, whole.notional, whole.capped_by) == (10.0, 1_000.0, None)
    # no minimum order: half a USDT still buys something
    dust = size_entry(
        100.0, stop, equity=0.5, cash=0.5, symbol_exposure=0.0, total_exposure=0.0, settings=RiskSettings(**edges)
    )
    assert (dust.quantity, dust.reason) == (0.005, None)


# -- confidence and confirmation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "level"),
    [(1.0, "high"), (0.8, "high"), (0.7999, "medium"), (0.6, "medium"), (0.5999, "low"), (0.0, "low")],
)
def test_confidence_levels(confidence: float, level: str) -> None:
    assert confidence_level(confidence) == level


@pytest.mark.parametrize(
    ("signal", "confidence", "expected"),
    [("BUY", 0.9, True), ("SELL", 0.6, True), ("BUY", 0.59, False), ("HOLD", 0.99, False), ("HOLD", 0.6, False)],
)
def test_actionable(signal: str, confidence: float, expected: bool) -> None:
    assert actionable(signal, confidence) is expected


@pytest.mark.parametrize(
    ("signal", "features", "expected"),
    [
        ("BUY", {"ma_7": 101.0, "ma_25": 100.0, "rsi_14": 55.0}, True),
        ("BUY", {"ma_7": 99.0, "ma_25": 100.0, "rsi_14": 55.0}, False),
        ("BUY", {"ma_7": 100.0, "ma_25": 100.0, "rsi_14": 55.0}, False),
        ("BUY", {"ma_7": 101.0, "ma_25": 100.0, "rsi_14": 70.0}, False),
        ("BUY", {"ma_7": 101.0, "ma_25": 100.0, "rsi_14": 69.99}, True),
        ("SELL", {"ma_7": 99.0, "ma_25": 100.0, "rsi_14": 45.0}, True),
        ("SELL", {"ma_7": 101.0, "ma_25": 100.0, "rsi_14": 45.0}, False),
        ("SELL", {"ma_7": 99.0, "ma_25": 100.0, "rsi_14": 30.0}, False),
        ("SELL", {"ma_7": 99.0, "ma_25": 100.0, "rsi_14": 30.01}, True),
        ("BUY", {"ma_7": 101.0, "ma_25": 100.0}, False),
        ("BUY", {"ma_7": None, "ma_25": 100.0, "rsi_14": 50.0}, False),
        ("SELL", {}, False),
        ("HOLD", {"ma_7": 101.0, "ma_25": 100.0, "rsi_14": 50.0}, False),
    ],
)
def test_indicator_confirms(signal: str, features: dict, expected: bool) -> None:
    assert indicator_confirms(signal, features) is expected
