"""The fast engine's compiled loop (numba): one paper account's ticks, fills, exits and decisions.

``pipeline.trading.fast_engine`` states the contract (the exchange's and the strategy's rules,
kept to the bit) and drives this loop; here are the loop, its flat state and the exact decimal
rounding of sizes. The state is arrays the caller owns: the order table (``of`` floats and ``oi``
integers, one row per order, the ``F_*`` and ``I_*`` columns), the account (``A_*``), counters
(``K_*``), per-symbol last tick, pending order and position, and the order in which symbols first
had a position (``opened``) or an order (``pended``), which is the order Python's dicts iterate
them and so the order every sum runs in. ``cfg`` holds the settings (``C_*``).

Every function is compiled once (``cache=True`` keeps the machine code under ``__pycache__``)
and runs without the GIL.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

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
