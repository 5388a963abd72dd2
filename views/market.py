"""Market: live candlesticks with volume and moving averages per symbol, from the 1-minute bars in
SQLite, with the models' BUY and SELL signals marked on the chart."""

from __future__ import annotations

import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from runtime import page_runtime
from storage import market
from storage import signals as signal_store
from views.first_run import first_run_panel

MAX_CANDLES = 3000
WINDOWS = {"1 h": 60, "3 h": 180, "6 h": 360, "24 h": 1440, "7 d": 10080}

runtime = page_runtime()
st.title("Market")
first_run_panel(runtime)

configured = list(runtime.config.symbols)
known = configured + [s for s in market.symbols(runtime.db) if s not in configured]
left, mid, right = st.columns([3, 2, 2])
chosen = left.multiselect("Symbols", known, default=configured[:2], key="market_symbols")
window = mid.segmented_control("Window", list(WINDOWS), default="3 h", key="market_window") or "3 h"
signal_model = right.selectbox("Signals of", ["none", *runtime.config.ml_models], index=1, key="market_model")
MA_WINDOWS = (7, 25)


def resample(bars: pd.DataFrame, limit: int = MAX_CANDLES) -> pd.DataFrame:
    """Merge 1-minute bars into wider ones so a chart never draws more than ``limit`` candles."""
    if len(bars) <= limit:
        return bars
    minutes = -(-len(bars) // limit)
    how = {
        "open": "first",
        "high": "max",
        "low": "min",
        "close": "last",
        "volume": "sum",
        **{c: "last" for c in bars.columns if c.startswith("ma_")},
    }
    agg = bars.set_index("time").resample(f"{minutes}min").agg(how).dropna(subset=["open"])
    return agg.reset_index()


def with_moving_averages(bars: pd.DataFrame) -> pd.DataFrame:
    """Add ``ma_N`` columns: the mean close of the last N 1-minute bars (seed 001's ma_7 and ma_25)."""
    out = bars.copy()
    for n in MA_WINDOWS:
        out[f"ma_{n}"] = out["close"].rolling(n).mean()
    return out


def candles(symbol: str, bars: pd.DataFrame, signals: pd.DataFrame | None = None) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.02)
    fig.add_trace(
        go.Candlestick(
            x=bars["time"], open=bars["open"], high=bars["high"], low=bars["low"], close=bars["close"], name=symbol
        ),
        row=1,
        col=1,
    )
    for n, color in zip(MA_WINDOWS, ("#f0a202", "#5c6bc0")):
        if f"ma_{n}" in bars:
            fig.add_trace(
                go.Scatter(
                    x=bars["time"], y=bars[f"ma_{n}"], mode="lines", name=f"MA {n}", line=dict(width=1.2, color=color)
                ),
                row=1,
                col=1,
            )
    if signals is not None and not signals.empty:
        for kind, symbol_shape, color in (("BUY", "triangle-up", "#2e7d32"), ("SELL", "triangle-down", "#c62828")):
            part = signals[signals["signal"] == kind]
            if not part.empty:
                fig.add_trace(
                    go.Scatter(
                        x=part["time"],
                        y=part["current_price"],
                        mode="markers",
                        name=kind,
                        marker=dict(symbol=symbol_shape, size=11, color=color, line=dict(width=1, color="white")),
                        customdata=part[["model", "expected_change_pct", "confidence"]],
                        hovertemplate=kind + " %{customdata[0]}<br>expected %{customdata[1]:+.2f}%<br>"
                        "confidence %{customdata[2]:.2f}<extra></extra>",
                    ),
                    row=1,
                    col=1,
                )
    colors = ["#26a69a" if c >= o else "#ef5350" for o, c in zip(bars["open"], bars["close"])]
    fig.add_trace(go.Bar(x=bars["time"], y=bars["volume"], marker_color=colors, name="volume"), row=2, col=1)
    fig.update_layout(
        height=460,
        margin=dict(l=10, r=10, t=30, b=10),
        showlegend=True,
        legend=dict(orientation="h", y=1.02, x=0.3),
        xaxis_rangeslider_visible=False,
        title=dict(text=symbol, x=0.01),
        uirevision=symbol,
    )
    fig.update_yaxes(title_text="USDT", row=1, col=1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    return fig


@st.fragment(run_every="2s")
def live() -> None:
    if not chosen:
        st.info("Pick at least one symbol.")
        return
    last = market.latest_ticks(runtime.db).set_index("symbol")
    cols = st.columns(len(chosen))
    for col, symbol in zip(cols, chosen):
        if symbol in last.index:
            row = last.loc[symbol]
            col.metric(symbol, f"{row['price']:,.6g}", f"{row['change_pct_24h']:+.2f}% 24h")
    since = int(time.time() * 1000) - WINDOWS[window] * 60_000
    for symbol in chosen:
        warm = max(MA_WINDOWS) * 60_000
        bars = market.bars(runtime.db, symbol, since_ms=since - warm, limit=WINDOWS[window] + max(MA_WINDOWS))
        if bars.empty:
            st.info(f"No market data for {symbol} yet; the feed writes a bar every minute.")
            continue
        bars = with_moving_averages(bars)
        bars = bars[bars["start"] >= since].reset_index(drop=True)
        signals = (
            signal_store.signals(runtime.db, symbol, since_ms=since, model=signal_model, actionable=True, limit=2000)
            if signal_model != "none"
            else None
        )
        st.plotly_chart(candles(symbol, resample(bars), signals), width="stretch", key=f"chart-{symbol}")


live()
