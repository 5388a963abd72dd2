"""Charts of a strategy run against buy-and-hold: the Backtest and Optimise pages' equity and drawdown,
and a symbol's candles with the run's entries and exits (plain plotly, no Streamlit).

``curve`` is a run's equity frame: ``time`` (UTC datetimes), ``equity``, ``buy_and_hold`` and, for the
drawdown, ``drawdown_pct`` (the strategy's, in percent below its running peak).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

UP, DOWN, GREY = "#2e7d32", "#c62828", "#9e9e9e"
_LEGEND = dict(orientation="h", y=1.02, x=0.5)
_MARGIN = dict(l=10, r=10, t=40, b=10)


def equity_vs_hold(curve: pd.DataFrame, *, title: str, name: str = "strategy", color: str = "#1e88e5") -> go.Figure:
    fig = go.Figure(
        [
            go.Scatter(x=curve["time"], y=curve["equity"], mode="lines", name=name, line=dict(color=color, width=2)),
            go.Scatter(
                x=curve["time"],
                y=curve["buy_and_hold"],
                mode="lines",
                name="buy & hold",
                line=dict(color=GREY, dash="dot"),
            ),
        ]
    )
    fig.update_layout(title=title, height=340, yaxis_title="USDT", margin=_MARGIN, legend=_LEGEND)
    return fig


def drawdown_vs_hold(curve: pd.DataFrame) -> go.Figure:
    """The strategy's drawdown next to buy-and-hold's, both in percent below their own running peak."""
    hold_dd = (curve["buy_and_hold"] / curve["buy_and_hold"].cummax() - 1.0) * 100.0
    fig = go.Figure(
        [
            go.Scatter(
                x=curve["time"],
                y=curve["drawdown_pct"],
                mode="lines",
                fill="tozeroy",
                name="strategy",
                line=dict(color=DOWN),
            ),
            go.Scatter(x=curve["time"], y=hold_dd, mode="lines", name="buy & hold", line=dict(color=GREY, dash="dot")),
        ]
    )
    fig.update_layout(title="Drawdown", height=260, yaxis_title="%", margin=_MARGIN, legend=_LEGEND)
    return fig


def trades_on_price(symbol: str, bars: pd.DataFrame, trades: pd.DataFrame) -> go.Figure:
    """``symbol``'s candles with an up-triangle at each entry and a down-triangle at each closed exit."""
    fig = go.Figure(
        go.Candlestick(
            x=bars["time"], open=bars["open"], high=bars["high"], low=bars["low"], close=bars["close"], name=symbol
        )
    )
    entries = trades[trades["symbol"] == symbol]
    exits = entries[entries["exit_reason"] != "open"]
    fig.add_trace(
        go.Scatter(
            x=entries["entry_time"],
            y=entries["entry_price"],
            mode="markers",
            name="entry",
            marker=dict(symbol="triangle-up", size=11, color=UP, line=dict(width=1, color="white")),
            customdata=entries[["confidence"]],
            hovertemplate="entry %{y:.6g}<br>confidence %{customdata[0]:.2f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=exits["exit_time"],
            y=exits["exit_price"],
            mode="markers",
            name="exit",
            marker=dict(symbol="triangle-down", size=11, color=DOWN, line=dict(width=1, color="white")),
            customdata=exits[["exit_reason", "pnl"]],
            hovertemplate="exit %{y:.6g} (%{customdata[0]})<br>P&L %{customdata[1]:+.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{symbol}: entries and exits",
        height=400,
        xaxis_rangeslider_visible=False,
        yaxis_title="USDT",
        margin=_MARGIN,
        legend=_LEGEND,
    )
    return fig
