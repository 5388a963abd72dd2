"""The fast backtest engine: ``MLSignalStrategy`` on ``Exchange``, as one compiled loop over the ticks.

Backtrader stays the reference (and the live path); this engine makes the same orders, fills, exits
and P&L on the same ``TickPlan`` (``tests/integration/test_engine_parity.py`` proves it on random
configurations and series), about 20 times faster. It is a numba loop over every tick of the
backtest in the plan's order, with the state of one paper account in flat arrays:

- **The exchange** (``pipeline.trading.exchange``), the part a backtest uses: a MARKET order fills
  at the first tick of its symbol *after* its time, a BUY at the tick's price plus slippage, a
  SELL minus it, a fee on each fill's notional; a BUY that the cash cannot pay at its fill is
  cancelled. Open positions close at the first later tick at or under their stop (``stop_loss``,
  or ``trailing_stop`` once the stop trails the highest price up) or at or over their target
  (``take_profit``), at that tick's price minus slippage; the stop is checked first. A pending
  order fills before its symbol's position is checked, and never on its own tick's millisecond.
- **The strategy** (``pipeline.trading.strategy`` with ``pipeline.trading.risk``): an actionable
  signal (BUY or SELL at medium confidence or more) acts at high confidence, at medium only
  when confirmed (another model, or the moving averages and RSI); none while the symbol has a
  pending order; long only (a SELL closes the position, a BUY needs none); entries sized by
  fixed fraction or fixed risk, capped by the symbol and total exposure and the cash left
  after pending buys, refused under the minimum order.

Every sum runs in the order the Python objects iterate (symbols in the order they first had a
position or an order), with the same IEEE operations, so the numbers are the same bits. Rounding
a size down to 8 significant digits of its decimal (``risk.floor_quantity``) is done exactly in
the loop (``_floor8``, held equal to the Python one by a property test); for sizes beyond 10^22
times or under 10^-22 times 10^7 the loop returns to Python for it and resumes.

What the engine does not do, and backtests never ask: LIMIT orders, orders arriving after later
ticks (the replay's catch-up), cancel requests, SELLs of other strategies. ``simulate`` runs a
plan and returns a ``Desk`` whose exchange holds the same books, cash and fees the backtrader run
leaves, so ``pipeline.trading.backtest`` reports both engines alike. ``run_arrays`` is the bare
loop for the optimiser: equity per bar and the trades, no ``Order`` objects.

Cost: about 50 ns a tick; a year of 1-minute bars (2.1 million ticks) runs in about 0.1 s, and the
orders and books of its result take about as long again.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from pipeline.messages import Order
from pipeline.trading.exchange import Book, Exchange, ExchangeSettings
from pipeline.trading.risk import RiskSettings, floor_quantity
from pipeline.trading.strategy import Desk, ModelSignal, make_order

CREATED_BY = "fast_engine"

# Skipped signals, by reason (the strategy's words).
SKIP_REASONS = (
    "medium confidence, not confirmed",
    "an order is pending",
    "SELL without a position (long only)",
    "already in a position",
    "no size: sizing",
    "no size: symbol exposure",
    "no size: total exposure",
    "no size: cash",
)
_MEDIUM, _PENDING, _SELL_FLAT, _HELD, _NO_SIZE = 0, 1, 2, 3, 4
CAPS = (None, "symbol exposure", "total exposure", "cash")
EXIT_REASONS = (None, "stop_loss", "trailing_stop", "take_profit", "signal")
_STOP, _TRAIL, _TARGET, _SIGNAL = 1, 2, 3, 4
STATUSES = ("PENDING", "FILLED", "CLOSED", "CANCELLED")
_PEND, _FILLED, _CLOSED, _CANCELLED = 0, 1, 2, 3
BUY, SELL = 1, 2

# Columns of the order table: floats (F_*) and integers (I_*).
F_QTY, F_PRICE, F_TOTAL, F_EQUITY, F_STOP0, F_TAKE, F_TRAIL = 0, 1, 2, 3, 4, 5, 6
F_FILL, F_FILL_FEE, F_EXIT, F_EXIT_FEE, F_STOP, F_HIGH, F_COST, F_CASH = 7, 8, 9, 10, 11, 12, 13, 14
N_F = 15
I_EVENT, I_SYM, I_SIDE, I_TS, I_HIGH_LEVEL, I_CONFIRM, I_CAPPED, I_CLOSES = 0, 1, 2, 3, 4, 5, 6, 7
I_STATUS, I_FILLED_AT, I_CLOSED_AT, I_EXIT_REASON, I_EXIT_BY = 8, 9, 10, 11, 12
N_I = 13
# The settings vector.
C_SL, C_TP, C_TRAIL, C_FIXED_RISK, C_POSITION, C_RISK, C_MAX_SYM, C_MAX_TOTAL = 0, 1, 2, 3, 4, 5, 6, 7
C_MIN_ORDER, C_FEE, C_SLIP, C_COST, C_START = 8, 9, 10, 11, 12
# Scalars of the account: cash, fees paid, realized P&L; counters: orders, symbols seen, slot.
A_CASH, A_FEES, A_REALIZED = 0, 1, 2
K_ORDERS, K_OPENED, K_PENDED, K_SLOT = 0, 1, 2, 3


class Events:
    """The ticks of a plan in the order backtrader's run hands them to the exchange, with what the
    strategy needs at each: the trading model's side when its signal can act (0: none), whether
    it is high confidence, and what confirms it at medium (-1: nothing, k: the k-th confirming
    model, ``len(confirm_models)``: the indicators)."""

    def __init__(
        self,
        symbol: np.ndarray,
        bar: np.ndarray,
        tick: np.ndarray,
        ts: np.ndarray,
        price: np.ndarray,
        slot_end: np.ndarray,
    ) -> None:
        self.symbol, self.bar, self.tick, self.ts, self.price = symbol, bar, tick, ts, price
        self.slot_end = slot_end
        ends = np.flatnonzero(slot_end)
        self.slot_first = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)  # first event of each slot

    def __len__(self) -> int:
        return len(self.ts)

    def span(self, first: int, end: int) -> tuple[int, int]:
        """The events of slots ``first..end-1``, as (first event, end event)."""
        slots = len(self.slot_first)
        return int(self.slot_first[first]), int(self.slot_first[end]) if end < slots else len(self)

    def between(self, first: int, end: int) -> Events:
        """The events of slots ``first..end-1`` (views, not copies)."""
        a, b = self.span(first, end)
        return Events(
            self.symbol[a:b], self.bar[a:b], self.tick[a:b], self.ts[a:b], self.price[a:b], self.slot_end[a:b]
        )


def events_of(symbols: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], slots: np.ndarray) -> Events:
    """Order the ticks of every symbol ((starts, times (bars, 4), prices (bars, 4)) each) as
    ``TickPlan.events`` does: slot by slot; in a slot, tick k of every symbol with a bar there
    before tick k + 1, ordered by time, then by the symbols' order."""
    if len(symbols) == 1:  # one symbol: its ticks in order, every slot its bar's four
        starts, times, prices = symbols[0]
        n = len(starts)
        slot_end = np.zeros(4 * n, dtype=np.bool_)
        slot_end[3::4] = True
        return Events(
            np.zeros(4 * n, dtype=np.int64),
            np.repeat(np.arange(n, dtype=np.int64), 4),
            np.tile(np.arange(4, dtype=np.int64), n),
            np.ascontiguousarray(times, dtype=np.int64).reshape(-1),
            np.ascontiguousarray(prices, dtype=np.float64).reshape(-1),
            slot_end,
        )
    parts = []
    for k, (starts, times, prices) in enumerate(symbols):
        n = len(starts)
        slot = np.repeat(np.searchsorted(slots, starts), 4)
        parts.append(
            (
                slot,
                np.tile(np.arange(4), n),
                times.reshape(-1),
                np.full(4 * n, k),
                np.repeat(np.arange(n), 4),
                prices.reshape(-1),
            )
        )
    slot, tick, ts, sym, bar, price = (np.concatenate([p[i] for p in parts]) for i in range(6))
    order = np.lexsort((sym, ts, tick, slot))
    slot = slot[order]
    slot_end = np.ones(len(slot), dtype=np.bool_)
    slot_end[:-1] = slot[1:] != slot[:-1]
    return Events(
        sym[order].astype(np.int64),
        bar[order].astype(np.int64),
        tick[order].astype(np.int64),
        ts[order].astype(np.int64),
        price[order].astype(np.float64),
        slot_end,
    )


def decisions(
    primary: tuple[np.ndarray, np.ndarray],
    others: Sequence[tuple[np.ndarray, np.ndarray]],
    levels: np.ndarray,
    risk: RiskSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (side, high, confirm) per event from the trading model's (code, confidence), each
    confirming model's and the (ma_7, ma_25, rsi_14) levels, as ``MLSignalStrategy.on_signals``
    reads a signal group (see ``Events``)."""
    code, conf = primary
    medium = risk.medium_confidence
    side = np.where((code != 0) & (conf >= medium), code, 0).astype(np.int8)
    high = (conf >= risk.high_confidence).astype(np.int8)
    confirm = np.full(len(code), -1, dtype=np.int16)
    ma7, ma25, rsi = levels[:, 0], levels[:, 1], levels[:, 2]
    with np.errstate(invalid="ignore"):
        indicator = np.where(code == BUY, (ma7 > ma25) & (rsi < 70.0), (ma7 < ma25) & (rsi > 30.0))
    confirm[indicator & (code != 0)] = len(others)
    for k in range(len(others) - 1, -1, -1):  # the first model that agrees wins
        ocode, oconf = others[k]
        confirm[(ocode == code) & (oconf >= medium) & (code != 0)] = k
    return side, high, confirm


def settings_vector(risk: RiskSettings, exchange: ExchangeSettings) -> np.ndarray:
    """The settings as the loop reads them, computed as ``Exchange`` computes its rates."""
    fee = exchange.fee_bps / 10_000.0
    slip = exchange.slippage_bps / 10_000.0
    out = np.zeros(13)
    out[C_SL], out[C_TP], out[C_TRAIL] = risk.stop_loss_pct, risk.take_profit_pct, risk.trailing_stop_pct
    out[C_FIXED_RISK] = 1.0 if risk.sizing == "fixed_risk" else 0.0
    out[C_POSITION], out[C_RISK] = risk.position_pct, risk.risk_pct
    out[C_MAX_SYM], out[C_MAX_TOTAL] = risk.max_symbol_exposure_pct, risk.max_total_exposure_pct
    out[C_MIN_ORDER] = risk.min_order_usdt
    out[C_FEE], out[C_SLIP] = fee, slip
    out[C_COST] = (1.0 + slip) * (1.0 + fee) - 1.0
    out[C_START] = exchange.starting_balance
    return out


# --------------------------------------------------------------------------- the loop


@njit(cache=True, nogil=True)
def _equity(
    acc: np.ndarray, cnt: np.ndarray, opened: np.ndarray, pos: np.ndarray, last: np.ndarray, of: np.ndarray
) -> float:
    total = 0.0
    for i in range(cnt[K_OPENED]):
        s = opened[i]
        if pos[s] >= 0:
            total += of[pos[s], F_QTY] * last[s]
    return acc[A_CASH] + total


@njit(cache=True, nogil=True)
def _close(
    q: int,
    ts: int,
    fill: float,
    reason: int,
    by: int,
    cfg: np.ndarray,
    acc: np.ndarray,
    pos: np.ndarray,
    s: int,
    of: np.ndarray,
    oi: np.ndarray,
) -> None:
    qty = of[q, F_QTY]
    proceeds = qty * fill
    fee = proceeds * cfg[C_FEE]
    acc[A_CASH] += proceeds - fee
    acc[A_FEES] += fee
    of[q, F_EXIT], of[q, F_EXIT_FEE] = fill, fee
    oi[q, I_STATUS], oi[q, I_CLOSED_AT], oi[q, I_EXIT_REASON], oi[q, I_EXIT_BY] = _CLOSED, ts, reason, by
    acc[A_REALIZED] += qty * (fill - of[q, F_FILL]) - of[q, F_FILL_FEE] - fee
    pos[s] = -1


@njit(cache=True, nogil=True)
def _tick(
    s: int,
    ts: int,
    price: float,
    cfg: np.ndarray,
    acc: np.ndarray,
    cnt: np.ndarray,
    last_ts: np.ndarray,
    last: np.ndarray,
    pend: np.ndarray,
    pos: np.ndarray,
    seen: np.ndarray,
    opened: np.ndarray,
    of: np.ndarray,
    oi: np.ndarray,
) -> None:
    if seen[s] & 1 and ts < last_ts[s]:
        return  # an out-of-order tick: the exchange ignores it
    last_ts[s], last[s] = ts, price
    seen[s] |= 1
    p = pend[s]
    if p >= 0 and ts > oi[p, I_TS]:
        if oi[p, I_SIDE] == BUY:
            fill = price * (1.0 + cfg[C_SLIP])
            cost = of[p, F_QTY] * fill
            fee = cost * cfg[C_FEE]
            pend[s] = -1
            if cost + fee > acc[A_CASH] + 1e-9:
                oi[p, I_STATUS], oi[p, I_CLOSED_AT] = _CANCELLED, ts
                of[p, F_COST], of[p, F_CASH] = cost + fee, acc[A_CASH]
            else:
                acc[A_CASH] -= cost + fee
                acc[A_FEES] += fee
                oi[p, I_STATUS], oi[p, I_FILLED_AT] = _FILLED, ts
                of[p, F_FILL], of[p, F_FILL_FEE], of[p, F_STOP], of[p, F_HIGH] = fill, fee, of[p, F_STOP0], price
                pos[s] = p
                if not seen[s] & 2:
                    seen[s] |= 2
                    opened[cnt[K_OPENED]] = s
                    cnt[K_OPENED] += 1
        else:
            fill = price * (1.0 - cfg[C_SLIP])
            target = oi[p, I_CLOSES]
            pend[s] = -1
            if oi[target, I_STATUS] != _FILLED:
                oi[p, I_STATUS], oi[p, I_CLOSED_AT] = _CANCELLED, ts  # a stop or target got there first
            else:
                _close(target, ts, fill, _SIGNAL, p, cfg, acc, pos, s, of, oi)
                oi[p, I_STATUS], oi[p, I_FILLED_AT] = _FILLED, ts
                of[p, F_FILL], of[p, F_FILL_FEE] = fill, of[target, F_EXIT_FEE]
    q = pos[s]
    if q >= 0 and ts > oi[q, I_FILLED_AT]:
        trail = of[q, F_TRAIL]
        if trail != 0.0 and price > of[q, F_HIGH]:
            of[q, F_HIGH] = price
            stop = price * (1.0 - trail / 100.0)
            if stop > of[q, F_STOP]:
                of[q, F_STOP] = stop
        if price <= of[q, F_STOP]:
            reason = _TRAIL if of[q, F_STOP] > of[q, F_STOP0] else _STOP
            _close(q, ts, price * (1.0 - cfg[C_SLIP]), reason, -1, cfg, acc, pos, s, of, oi)
        elif price >= of[q, F_TAKE]:
            _close(q, ts, price * (1.0 - cfg[C_SLIP]), _TARGET, -1, cfg, acc, pos, s, of, oi)


_POW10 = np.array([10.0**i for i in range(23)])  # exact doubles: 10^0 .. 10^22
_SPLIT = 134217729.0  # 2^27 + 1, Dekker's splitter


@njit(cache=True, nogil=True)
def _two_product(a: float, b: float) -> tuple[float, float]:
    """(p, e) with p + e == a * b exactly (Dekker; no overflow here)."""
    p = a * b
    c = _SPLIT * a
    a_hi = c - (c - a)
    a_lo = a - a_hi
    c = _SPLIT * b
    b_hi = c - (c - b)
    b_lo = b - b_hi
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


@njit(cache=True, nogil=True)
def _floor8(x: float) -> float:
    """``risk.floor_quantity``: ``x`` rounded down to 8 significant digits of its shortest decimal.

    With T the exact value of ``x`` cut to 8 digits and B the next 8-digit decimal above it, the
    shortest decimal that is ``x`` rounds down to B when B as a float is ``x`` (B is then within
    half an ulp, and no other 8-digit decimal is), and to T otherwise. T and B are found exactly:
    ``x`` times (or over) an exact power of ten, with the product's rounding error kept. Returns
    -1.0 when the power needed is beyond 10^22 (the caller rounds in Python then).
    """
    if not (x > 0.0 and math.isfinite(x)):
        return 0.0
    k = int(np.floor(np.log10(x))) - 7
    for _ in range(3):  # log10 may be off by one next to a power of ten
        if k > 22 or k < -22:
            return -1.0
        if k <= 0:
            p, e = _two_product(x, _POW10[-k])
            n = np.floor(p)
            if p == n and e < 0.0:
                n -= 1.0
        else:
            n = np.floor(x / _POW10[k])
            p, e = _two_product(n, _POW10[k])
            r = (x - p) - e  # exact: x - n 10^k
            if r < 0.0:
                n -= 1.0
            elif r >= _POW10[k]:
                n += 1.0
        if n >= 100_000_000.0:
            k += 1
        elif n < 10_000_000.0:
            k -= 1
        else:
            break
    else:
        return -1.0
    if k <= 0:
        below, above = n / _POW10[-k], (n + 1.0) / _POW10[-k]
    else:
        below, above = n * _POW10[k], (n + 1.0) * _POW10[k]
    return above if above == x else below


def floor8(x: float) -> float:
    """The compiled ``floor_quantity`` (for tests); -1.0 where it defers to Python."""
    return float(_floor8(float(x)))


@njit(cache=True, nogil=True)
def _run(
    e0: int,
    qty_in: float,
    ev_sym: np.ndarray,
    ev_ts: np.ndarray,
    ev_price: np.ndarray,
    ev_side: np.ndarray,
    ev_high: np.ndarray,
    ev_confirm: np.ndarray,
    ev_slot_end: np.ndarray,
    cfg: np.ndarray,
    acc: np.ndarray,
    cnt: np.ndarray,
    skips: np.ndarray,
    last_ts: np.ndarray,
    last: np.ndarray,
    pend: np.ndarray,
    pos: np.ndarray,
    seen: np.ndarray,
    opened: np.ndarray,
    pended: np.ndarray,
    of: np.ndarray,
    oi: np.ndarray,
    equity: np.ndarray,
    exposed: np.ndarray,
) -> tuple[int, float]:
    """Run events ``e0..``; return (-1, 0) at the end, or (e, raw) when the entry at event ``e``
    needs ``floor_quantity(raw)``: call again with ``e0=e`` and ``qty_in`` set to it."""
    for e in range(e0, len(ev_ts)):
        s, ts, price = ev_sym[e], ev_ts[e], ev_price[e]
        resuming = e == e0 and qty_in >= 0.0
        if not resuming:
            _tick(s, ts, price, cfg, acc, cnt, last_ts, last, pend, pos, seen, opened, of, oi)
        side = ev_side[e]
        if side != 0:
            if ev_high[e] == 0 and ev_confirm[e] < 0:
                skips[_MEDIUM] += 1
            elif pend[s] >= 0:
                skips[_PENDING] += 1
            elif side == SELL and pos[s] < 0:
                skips[_SELL_FLAT] += 1
            elif side == BUY and pos[s] >= 0:
                skips[_HELD] += 1
            else:
                qty, stop, take, capped = 0.0, 0.0, 0.0, 0
                eq = _equity(acc, cnt, opened, pos, last, of)
                if side == SELL:
                    qty = of[pos[s], F_QTY]
                else:
                    stop = price * (1.0 - cfg[C_SL] / 100.0)
                    take = price * (1.0 + cfg[C_TP] / 100.0)
                    # risk.size_entry: the sizing rule's notional, capped in turn
                    notional = -1.0
                    if price > 0 and math.isfinite(price) and eq > 0:
                        if cfg[C_FIXED_RISK] != 0.0:
                            per_unit = price - stop
                            if per_unit > 0:
                                notional = eq * cfg[C_RISK] / 100.0 / per_unit * price
                        else:
                            notional = eq * cfg[C_POSITION] / 100.0
                    if notional >= 0.0:
                        total = 0.0
                        for i in range(cnt[K_OPENED]):
                            o = opened[i]
                            if pos[o] >= 0:
                                total += of[pos[o], F_QTY] * last[o]
                        reserved = 0.0
                        for i in range(cnt[K_PENDED]):
                            o = pended[i]
                            if pend[o] >= 0 and oi[pend[o], I_SIDE] == BUY:
                                total += of[pend[o], F_TOTAL]
                                reserved += of[pend[o], F_TOTAL]
                        room = eq * cfg[C_MAX_SYM] / 100.0 - 0.0  # no position or order of s here
                        if room < notional:
                            notional, capped = room, 1
                        room = eq * cfg[C_MAX_TOTAL] / 100.0 - total
                        if room < notional:
                            notional, capped = room, 2
                        room = (acc[A_CASH] - reserved * (1.0 + cfg[C_COST])) / (1.0 + cfg[C_COST])
                        if room < notional:
                            notional, capped = room, 3
                        if notional < max(cfg[C_MIN_ORDER], 1e-12):
                            skips[_NO_SIZE + capped] += 1
                            notional = -2.0
                    else:
                        skips[_NO_SIZE] += 1
                    if notional >= 0.0:
                        if resuming:
                            qty = qty_in
                        else:
                            qty = _floor8(notional / price)
                            if qty < 0.0:  # out of the compiled form's range: Python rounds it
                                return e, notional / price
                        if qty <= 0:
                            skips[_NO_SIZE] += 1
                if qty > 0:
                    k = cnt[K_ORDERS]
                    cnt[K_ORDERS] += 1
                    of[k, :] = 0.0
                    oi[k, :] = 0
                    of[k, F_QTY], of[k, F_PRICE], of[k, F_TOTAL], of[k, F_EQUITY] = qty, price, qty * price, eq
                    oi[k, I_EVENT], oi[k, I_SYM], oi[k, I_SIDE], oi[k, I_TS] = e, s, side, ts
                    oi[k, I_HIGH_LEVEL], oi[k, I_CONFIRM], oi[k, I_STATUS] = ev_high[e], ev_confirm[e], _PEND
                    oi[k, I_EXIT_BY], oi[k, I_CLOSES] = -1, -1
                    if side == SELL:
                        oi[k, I_CLOSES] = pos[s]
                    else:
                        of[k, F_STOP0], of[k, F_TAKE], of[k, F_TRAIL] = stop, take, cfg[C_TRAIL]
                        oi[k, I_CAPPED] = capped
                    pend[s] = k
                    if not seen[s] & 4:
                        seen[s] |= 4
                        pended[cnt[K_PENDED]] = s
                        cnt[K_PENDED] += 1
        if ev_slot_end[e]:
            i = cnt[K_SLOT]
            equity[i] = _equity(acc, cnt, opened, pos, last, of)
            held = False
            for o in range(cnt[K_OPENED]):
                if pos[opened[o]] >= 0:
                    held = True
            exposed[i] = held
            cnt[K_SLOT] += 1
    return -1, 0.0


@dataclass
class Run:
    """What the loop leaves: the order table (``of``/``oi``, ``orders`` rows), the account, the
    equity and exposure at every slot's end, the skip counts, each symbol's last tick."""

    of: np.ndarray
    oi: np.ndarray
    orders: int
    cash: float
    fees_paid: float
    realized: float
    equity: np.ndarray
    exposed: np.ndarray
    skips: np.ndarray
    last_ts: np.ndarray
    last: np.ndarray
    seen: np.ndarray
    opened: np.ndarray
    pended: np.ndarray

    def trades(self) -> np.ndarray:
        """The rows of the BUYs that filled (open or closed)."""
        rows = np.arange(self.orders)
        oi = self.oi[: self.orders]
        return rows[(oi[:, I_SIDE] == BUY) & ((oi[:, I_STATUS] == _FILLED) | (oi[:, I_STATUS] == _CLOSED))]


Progress = Callable[[float, str], None]


def run_arrays(
    events: Events,
    side: np.ndarray,
    high: np.ndarray,
    confirm: np.ndarray,
    n_symbols: int,
    cfg: np.ndarray,
    progress: Progress | None = None,
) -> Run:
    """Run the loop over ``events`` (a whole plan, or a slice of whole slots) from a fresh account."""
    n = len(events)
    capacity = int(np.count_nonzero(side)) + 1
    of = np.zeros((capacity, N_F))
    oi = np.zeros((capacity, N_I), dtype=np.int64)
    acc = np.array([cfg[C_START], 0.0, 0.0])
    cnt = np.zeros(4, dtype=np.int64)
    skips = np.zeros(len(SKIP_REASONS), dtype=np.int64)
    last_ts = np.zeros(n_symbols, dtype=np.int64)
    last = np.zeros(n_symbols)
    pend = np.full(n_symbols, -1, dtype=np.int64)
    pos = np.full(n_symbols, -1, dtype=np.int64)
    seen = np.zeros(n_symbols, dtype=np.int64)
    opened = np.zeros(n_symbols, dtype=np.int64)
    pended = np.zeros(n_symbols, dtype=np.int64)
    slots = int(np.count_nonzero(events.slot_end))
    equity = np.zeros(slots)
    exposed = np.zeros(slots, dtype=np.bool_)
    e, qty = 0, -1.0
    step = max(1, n // 50)
    next_report = step
    while True:
        at, raw = _run(
            e,
            qty,
            events.symbol,
            events.ts,
            events.price,
            side,
            high,
            confirm,
            events.slot_end,
            cfg,
            acc,
            cnt,
            skips,
            last_ts,
            last,
            pend,
            pos,
            seen,
            opened,
            pended,
            of,
            oi,
            equity,
            exposed,
        )
        if at < 0:
            break
        e, qty = at, floor_quantity(raw)
        if progress is not None and at >= next_report:
            progress(at / n, f"tick {at:,} of {n:,}")
            next_report = at + step
    return Run(
        of,
        oi,
        int(cnt[K_ORDERS]),
        float(acc[A_CASH]),
        float(acc[A_FEES]),
        float(acc[A_REALIZED]),
        equity,
        exposed,
        skips,
        last_ts,
        last,
        seen,
        opened[: cnt[K_OPENED]],
        pended[: cnt[K_PENDED]],
    )


# --------------------------------------------------------------------------- back to objects


def to_desk(
    run: Run,
    events: Events,
    symbols: Sequence[str],
    signal_at: Callable[[int], ModelSignal],
    confirm_models: Sequence[str],
    *,
    model: str,
    risk: RiskSettings,
    exchange: ExchangeSettings,
    desk_kwargs: dict[str, object] | None = None,
) -> Desk:
    """A ``Desk`` as the backtrader run leaves it: its orders (as the strategy makes them), the
    exchange's books, cash, fees and last prices, each order's last status, the skip counts.
    ``signal_at(event)`` is the trading model's signal at an order's event."""
    ex = Exchange(exchange)
    desk = Desk(ex, risk, model, tuple(confirm_models), **(desk_kwargs or {}))  # type: ignore[arg-type]
    orders: list[Order] = []
    for k in range(run.orders):
        f, i = run.of[k], run.oi[k]
        side, confirm, high = int(i[I_SIDE]), int(i[I_CONFIRM]), bool(i[I_HIGH_LEVEL])
        orders.append(
            make_order(
                symbols[int(i[I_SYM])],
                int(i[I_TS]),
                float(f[F_PRICE]),
                signal_at(int(i[I_EVENT])),
                "SELL" if side == SELL else "BUY",
                float(f[F_QTY]),
                "high" if high else "medium",
                None if high else (confirm_models[confirm] if confirm < len(confirm_models) else "indicator"),
                equity=float(f[F_EQUITY]),
                risk=risk,
                strategy=desk.strategy,
                account=desk.account,
                created_by=CREATED_BY,
                closes=orders[int(i[I_CLOSES])].order_id if side == SELL else None,
                stop=float(f[F_STOP0]) if side == BUY else None,
                take=float(f[F_TAKE]) if side == BUY else None,
                capped_by=CAPS[int(i[I_CAPPED])],
            )
        )
    books = [_book(order, run.of[k], run.oi[k], orders) for k, order in enumerate(orders)]
    by_symbol = {int(s): [b for b in books if b.symbol == symbols[int(s)]] for s in range(len(symbols))}
    for s in run.pended:
        ex.pending[symbols[int(s)]] = {b.order_id: b for b in by_symbol[int(s)] if b.status == "PENDING"}
    for s in run.opened:
        ex.open[symbols[int(s)]] = {
            b.order_id: b for b in by_symbol[int(s)] if b.status == "FILLED" and b.order.action == "BUY"
        }
    for b in books:
        ex.books[b.order_id] = b
    for s, name in enumerate(symbols):
        if run.seen[s] & 1:
            ex.last[name] = (int(run.last_ts[s]), float(run.last[s]))
    ex.cash, ex.fees_paid, ex.realized = run.cash, run.fees_paid, run.realized
    desk.orders = orders
    desk.statuses = [ex._message(b) for b in books if b.status != "PENDING"]
    desk.skipped = Counter({reason: int(n) for reason, n in zip(SKIP_REASONS, run.skips) if n})
    return desk


def _book(order: Order, f: np.ndarray, i: np.ndarray, orders: list[Order]) -> Book:
    """The exchange's book of ``order`` in the state the loop left it."""
    closes = order.metadata.get("closes")
    book = Book(order, closes=closes)
    status = book.status = STATUSES[int(i[I_STATUS])]
    if status in ("FILLED", "CLOSED"):
        book.fill_price, book.fill_fee, book.filled_at = float(f[F_FILL]), float(f[F_FILL_FEE]), int(i[I_FILLED_AT])
        if order.action == "BUY":
            book.stop, book.take_profit = float(f[F_STOP]), float(f[F_TAKE])
            book.trailing_pct, book.high = float(f[F_TRAIL]), float(f[F_HIGH])
    if status == "CLOSED":
        book.exit_price, book.exit_fee, book.closed_at = float(f[F_EXIT]), float(f[F_EXIT_FEE]), int(i[I_CLOSED_AT])
        book.exit_reason = EXIT_REASONS[int(i[I_EXIT_REASON])]
        by = int(i[I_EXIT_BY])
        book.exit_order_id = orders[by].order_id if by >= 0 else None
    if status == "CANCELLED":
        book.closed_at = int(i[I_CLOSED_AT])
        if order.action == "BUY":
            book.reason = f"insufficient cash: the fill costs {f[F_COST]:,.2f} USDT, cash is {f[F_CASH]:,.2f} USDT"
        else:
            book.reason = f"the position {closes} is already closed"
    return book
