"""Portfolio: the paper account the virtual exchange keeps, live: balances, open positions (close
one by hand), pending orders (cancel one), the order history, equity against buy-and-hold, and why
signals made no order.

Everything shown is read from SQLite (written by the virtual-exchange stage) or from the running
stages' counters. A close or a cancel is an order on ``crypto.orders``; the virtual exchange acts on
it at the next tick and the page shows the result a moment later.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pipeline.errors import PipelineError
from pipeline.messages import Order
from pipeline.trading.manual import cancel_request, close_request, publish
from runtime import page_runtime
from storage import market, orders, status

ALL = "All"
STATUSES = ["PENDING", "FILLED", "CLOSED", "CANCELLED"]
HISTORY_ROWS = 500
UP, DOWN = "#26a69a", "#ef5350"

runtime = page_runtime()
db, config = runtime.db, runtime.config
st.title("Portfolio")
st.caption(
    f"The paper account of the virtual exchange: {config.exchange.starting_balance:,.0f} USDT to start, "
    f"{config.exchange.fee_bps:g} bps fee and {config.exchange.slippage_bps:g} bps slippage a fill. "
    f"The decision stage trades {config.decision_model}'s signals"
    + (f", confirmed by {', '.join(config.decision_confirm_models)}" if config.decision_confirm_models else "")
    + f"; stop-loss {config.risk.stop_loss_pct:g} %, take-profit {config.risk.take_profit_pct:g} %."
)


# --------------------------------------------------------------------------- helpers


def market_now(symbol: str) -> int:
    """The market time of ``symbol`` in the account the page shows (a replay's time is the past), or
    the clock: a manual order fills at the first tick after this."""
    state = orders.portfolio_state(db)
    seen = (state or {}).get("market_time", {}).get(symbol)
    return int(seen) if seen else int(time.time() * 1000)


def send(order: Order, done: str) -> None:
    """Publish ``order``; leave a notice for the next render (a button callback)."""
    try:
        publish(runtime.producer, order)
    except PipelineError as exc:
        st.session_state["portfolio_notice"] = ("error", f"Not sent: {exc}")
    else:
        st.session_state["portfolio_notice"] = ("success", done)


def close_position(position: dict[str, Any]) -> None:
    order = close_request(
        position["order_id"],
        position["symbol"],
        float(position["quantity"]),
        float(position["price"]),
        now_ms=market_now(position["symbol"]),
    )
    send(order, f"Close of {position['symbol']} sent ({order.order_id}): it fills at the next tick.")


def cancel_order(pending: dict[str, Any]) -> None:
    order = Order.model_validate(pending, strict=False)
    send(
        cancel_request(order, now_ms=int(time.time() * 1000)),
        f"Cancel of {order.order_id} sent: the exchange cancels it if it is still pending.",
    )


def utc(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(ms.astype("Float64"), unit="ms", utc=True)


def money(value: float) -> str:
    return f"{value:,.2f}"


# --------------------------------------------------------------------------- live account


@st.fragment(run_every="2s")
def account() -> None:
    notice = st.session_state.pop("portfolio_notice", None)
    if notice:
        (st.success if notice[0] == "success" else st.error)(notice[1])
    exchange = status.stage(db, "virtual-exchange")
    exchange_running = exchange is not None and exchange.running
    if not exchange_running:
        st.warning(
            "The virtual-exchange stage is not running (add `virtual-exchange` to STAGES): orders are not "
            "filled and the figures below are the last it stored.",
            icon=":material/warning:",
        )
    state = orders.portfolio_state(db)
    if orders.orders(db, limit=1).empty:
        st.info(
            "No orders yet. Orders appear once a model is trained (Signals page) and its signals reach high "
            "confidence, or medium confidence confirmed by another model or by the indicators. The decision "
            "stage then sizes an entry and the virtual exchange fills it at the next tick.",
            icon=":material/info:",
        )
    start = float(state["starting_balance"]) if state else config.exchange.starting_balance
    equity = float(state["equity"]) if state else start
    st.subheader("Balances")
    c = st.columns(4)
    c[0].metric("Cash (USDT)", money(state["cash"] if state else start))
    c[1].metric("Equity (USDT)", money(equity))
    c[2].metric("Starting balance (USDT)", money(start))
    c[3].metric("Total return", f"{(equity / start - 1.0) * 100.0:+.2f} %" if start else "—")
    c = st.columns(4)
    c[0].metric("Realized P&L (USDT)", f"{state['realized'] if state else 0.0:+,.2f}")
    c[1].metric("Unrealized P&L (USDT)", f"{state['unrealized'] if state else 0.0:+,.2f}")
    c[2].metric("Fees paid (USDT)", money(state["fees_paid"] if state else 0.0))
    c[3].metric("Exposure", f"{state['exposure_pct'] if state else 0.0:.1f} %")

    positions = (state or {}).get("positions") or []
    st.subheader("Open positions")
    if not positions:
        st.caption("No open position.")
    else:
        frame = pd.DataFrame(positions)
        frame["since"] = utc(frame["filled_at"])
        st.dataframe(
            frame[
                [
                    "symbol",
                    "quantity",
                    "entry_price",
                    "price",
                    "value",
                    "unrealized",
                    "unrealized_pct",
                    "stop",
                    "take_profit",
                    "since",
                    "order_id",
                ]
            ],
            hide_index=True,
            width="stretch",
            column_config={
                "entry_price": st.column_config.NumberColumn("entry", format="%.6g"),
                "price": st.column_config.NumberColumn("last price", format="%.6g"),
                "value": st.column_config.NumberColumn("value (USDT)", format="%.2f"),
                "unrealized": st.column_config.NumberColumn("unrealized P&L", format="%+.2f"),
                "unrealized_pct": st.column_config.NumberColumn("unrealized %", format="%+.2f"),
                "stop": st.column_config.NumberColumn("stop", format="%.6g"),
                "take_profit": st.column_config.NumberColumn("take-profit", format="%.6g"),
                "since": st.column_config.DatetimeColumn("since (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            },
        )
        buttons = st.columns(min(len(positions), 6))
        for i, p in enumerate(positions):
            buttons[i % len(buttons)].button(
                f"Close {p['symbol']}",
                key=f"close_{p['order_id']}",
                icon=":material/close:",
                help=f"Sell {p['quantity']:g} {p['symbol']} at the market ({p['order_id']})",
                on_click=close_position,
                args=(p,),
                disabled=not exchange_running,
            )

    pending = (state or {}).get("pending") or []
    st.subheader("Pending orders")
    if not pending:
        st.caption("No pending order.")
    else:
        frame = pd.DataFrame(
            [
                {
                    "created": o["timestamp"],
                    "symbol": o["symbol"],
                    "action": o["action"],
                    "type": o["order_type"],
                    "quantity": o["quantity"],
                    "price": o["price"],
                    "strategy": o["strategy"],
                    "closes": o["metadata"].get("closes"),
                    "order_id": o["order_id"],
                }
                for o in pending
            ]
        )
        frame["created"] = utc(frame["created"])
        st.dataframe(
            frame,
            hide_index=True,
            width="stretch",
            column_config={
                "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                "price": st.column_config.NumberColumn(format="%.6g"),
            },
        )
        buttons = st.columns(min(len(pending), 6))
        for i, o in enumerate(pending):
            buttons[i % len(buttons)].button(
                f"Cancel {o['symbol']} {o['action']} {o['order_type']}",
                key=f"cancel_{o['order_id']}",
                icon=":material/cancel:",
                help=f"Cancel {o['order_id']} if it is still pending",
                on_click=cancel_order,
                args=(o,),
                disabled=not exchange_running,
            )

    st.subheader("Why no order")
    decision = status.stage(db, "decision")
    left, right = st.columns([3, 1])
    if decision is None or not decision.running:
        left.info(
            "The decision stage is not running (add `decision` to STAGES): no order is made from signals.",
            icon=":material/info:",
        )
    else:
        skipped = {why: n for why, n in decision.details.get("skipped", {}).items() if n}
        if skipped:
            left.dataframe(
                pd.DataFrame(sorted(skipped.items(), key=lambda kv: -kv[1]), columns=["reason", "signals"]),
                hide_index=True,
                width="stretch",
            )
        else:
            left.caption("The decision stage has not let a signal go without an order yet.")
    right.metric(
        "Orders the exchange rejected",
        f"{exchange.details.get('rejected', 0):,}" if exchange else "—",
        help="Orders that broke one of the exchange's rules (dead-lettered on crypto.orders_dlq).",
    )


account()


# --------------------------------------------------------------------------- history and curves


def equity_figure(curve: pd.DataFrame, hold: pd.DataFrame) -> go.Figure:
    fig = go.Figure(
        go.Scatter(
            x=curve["time"], y=curve["equity"], mode="lines", name="portfolio", line=dict(color="#1e88e5", width=2)
        )
    )
    if not hold.empty:
        fig.add_trace(
            go.Scatter(
                x=hold["time"], y=hold["value"], mode="lines", name="buy & hold", line=dict(color="#9e9e9e", dash="dot")
            )
        )
    fig.update_layout(
        title="Equity vs buy-and-hold of the traded symbols",
        height=340,
        yaxis_title="USDT",
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=1.02, x=0.5),
    )
    return fig


@st.fragment(run_every="5s")
def history() -> None:
    st.subheader("Order history")
    c = st.columns([1, 1, 3])
    symbol = c[0].selectbox("Symbol", [ALL, *orders.order_symbols(db)], key="pf_symbol")
    status = c[1].selectbox("Status", [ALL, *STATUSES], key="pf_status")
    rows = orders.orders(
        db, symbol=None if symbol == ALL else symbol, status=None if status == ALL else status, limit=HISTORY_ROWS
    )
    if rows.empty:
        st.caption("No orders" + ("" if symbol == ALL and status == ALL else " match the filters") + ".")
    else:
        st.dataframe(
            rows[
                [
                    "created",
                    "symbol",
                    "action",
                    "order_type",
                    "status",
                    "quantity",
                    "price",
                    "fill_price",
                    "exit_price",
                    "exit_reason",
                    "pnl",
                    "strategy",
                    "model",
                    "reason",
                    "updated",
                    "order_id",
                    "closes",
                ]
            ],
            hide_index=True,
            width="stretch",
            column_config={
                "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                "updated": st.column_config.DatetimeColumn("updated (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                "order_type": "type",
                "price": st.column_config.NumberColumn(format="%.6g"),
                "fill_price": st.column_config.NumberColumn("fill", format="%.6g"),
                "exit_price": st.column_config.NumberColumn("exit", format="%.6g"),
                "pnl": st.column_config.NumberColumn("P&L", format="%+.2f"),
            },
        )
        if len(rows) == HISTORY_ROWS:
            st.caption(f"The newest {HISTORY_ROWS} orders.")

    curve = orders.equity_curve(db)
    if curve.empty:
        st.caption("The equity curve starts with the first tick the virtual exchange sees.")
        return
    state = orders.portfolio_state(db)
    start = float(state["starting_balance"]) if state else config.exchange.starting_balance
    traded = orders.traded_symbols(db)
    hold = market.buy_and_hold(db, traded, int(curve["timestamp"].iloc[0]), int(curve["timestamp"].iloc[-1]), start)
    st.plotly_chart(equity_figure(curve, hold), width="stretch")
    if traded and hold.empty:
        st.caption("Buy-and-hold needs the traded symbols' 1-minute bars (the market-store stage).")
    left, right = st.columns(2)
    drawdown = (curve["equity"] / curve["equity"].cummax() - 1.0) * 100.0
    left.plotly_chart(
        go.Figure(
            go.Scatter(
                x=curve["time"], y=drawdown, fill="tozeroy", mode="lines", name="drawdown", line=dict(color=DOWN)
            )
        ).update_layout(title="Drawdown", height=280, yaxis_title="%", margin=dict(l=10, r=10, t=40, b=10)),
        width="stretch",
    )
    exposure = (curve["exposure"] / curve["equity"] * 100.0).where(curve["equity"] > 0, 0.0)
    right.plotly_chart(
        go.Figure(
            go.Scatter(
                x=curve["time"],
                y=exposure,
                fill="tozeroy",
                mode="lines",
                name="exposure",
                line=dict(color=UP, shape="hv"),
            )
        ).update_layout(title="Exposure", height=280, yaxis_title="% of equity", margin=dict(l=10, r=10, t=40, b=10)),
        width="stretch",
    )


history()
