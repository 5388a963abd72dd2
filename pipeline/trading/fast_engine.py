"""The fast backtest engine: ``MLSignalStrategy`` on ``Exchange``, as one compiled loop over the ticks.

Backtrader stays the reference (and the live path); this engine makes the same orders, fills, exits
and P&L on the same ``TickPlan`` (``tests/integration/test_engine_parity.py`` proves it on random
configurations and series), about 100 times faster. It is a numba loop (``pipeline.trading.fast_loop``)
over every tick of the backtest in the plan's order, with the state of one paper account in flat
arrays:

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
the loop (``fast_loop._floor8``, held equal to the Python one by a property test); a size under
1e-15 or over 1e29 units is handed back to Python to round, and the loop resumes.

What the engine does not do, and backtests never ask: LIMIT orders, orders arriving after later
ticks (the replay's catch-up), cancel requests, SELLs of other strategies. ``run_arrays`` runs
the loop over ``Events`` (``events_of`` orders a plan's ticks) and leaves arrays: the optimiser
reads its equity per bar and its trades, with no ``Order`` object made. ``to_desk`` turns a run
into the ``Desk`` a backtrader run leaves (its orders, the exchange's books, cash, fees and last
prices, the skip counts), so ``pipeline.trading.backtest.simulate`` reports both engines alike.

Cost: about 50 ns a tick; a year of 1-minute bars (2.1 million ticks) runs in about 0.1 s, and the
orders and books of its result take about as long again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.messages import Order
from pipeline.trading.exchange import Book, Exchange, ExchangeSettings
from pipeline.trading.fast_loop import (
    A_CASH,
    A_FEES,
    A_REALIZED,
    BUY,
    C_COST,
    C_FEE,
    C_FIXED_RISK,
    C_MAX_SYM,
    C_MAX_TOTAL,
    C_MIN_ORDER,
    C_POSITION,
    C_RISK,
    C_SL,
    C_SLIP,
    C_START,
    C_TP,
    C_TRAIL,
    CAPS,
    EXIT_REASONS,
    F_CASH,
    F_COST,
    F_EQUITY,
    F_EXIT,
    F_EXIT_FEE,
    F_FILL,
    F_FILL_FEE,
    F_HIGH,
    F_PRICE,
    F_QTY,
    F_STOP,
    F_STOP0,
    F_TAKE,
    F_TRAIL,
    I_CAPPED,
    I_CLOSED_AT,
    I_CLOSES,
    I_CONFIRM,
    I_EVENT,
    I_EXIT_BY,
    I_EXIT_REASON,
    I_FILLED_AT,
    I_HIGH_LEVEL,
    I_SIDE,
    I_STATUS,
    I_SYM,
    I_TS,
    K_OPENED,
    K_ORDERS,
    K_PENDED,
    N_F,
    N_I,
    SELL,
    SKIP_REASONS,
    STATUSES,
    _run,
)
from pipeline.trading.risk import RiskSettings, floor_quantity
from pipeline.trading.strategy import Desk, ModelSignal, make_order

CREATED_BY = "fast_engine"


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
        filled, closed = STATUSES.index("FILLED"), STATUSES.index("CLOSED")
        return rows[(oi[:, I_SIDE] == BUY) & ((oi[:, I_STATUS] == filled) | (oi[:, I_STATUS] == closed))]


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
