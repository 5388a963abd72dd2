"""Market: a live candlestick chart with volume per symbol, from the 1-minute bars in SQLite."""

from __future__ import annotations

import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from runtime import page_runtime
from storage import queries

MAX_CANDLES = 3000
WINDOWS = {"1 h": 60, "3 h": 180, "6 h": 360, "24 h": 1440, "7 d": 10080}

runtime = page_runtime()
st.title("Market")

configured = list(runtime.config.symbols)
known = configured + [s for s in queries.symbols(runtime.db) if s not in configured]
left, right = st.columns([3, 2])
chosen = left.multiselect("Symbols", known, default=configured[:2], key="market_symbols")
window = right.segmented_control("Window", list(WINDOWS), default="3 h", key="market_window") or "3 h"


def resample(bars: pd.DataFrame, limit: int = MAX_CANDLES) -> pd.DataFrame:
    """Merge 1-minute bars into wider ones so a chart never draws more than ``limit`` candles."""
    if len(bars) <= limit:
        return bars
    minutes = -(-len(bars) // limit)
    agg = bars.set_index("time").resample(f"{minutes}min").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
    return agg.reset_index()


def candles(symbol: str, bars: pd.DataFrame) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.02)
    fig.add_trace(go.Candlestick(x=bars["time"], open=bars["open"], high=bars["high"], low=bars["low"],
                                 close=bars["close"], name=symbol), row=1, col=1)
    colors = ["#26a69a" if c >= o else "#ef5350" for o, c in zip(bars["open"], bars["close"])]
    fig.add_trace(go.Bar(x=bars["time"], y=bars["volume"], marker_color=colors, name="volume"), row=2, col=1)
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      xaxis_rangeslider_visible=False, title=dict(text=symbol, x=0.01),
                      uirevision=symbol)
    fig.update_yaxes(title_text="USDT", row=1, col=1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    return fig


@st.fragment(run_every="2s")
def live() -> None:
    if not chosen:
        st.info("Pick at least one symbol.")
        return
    last = queries.latest_ticks(runtime.db).set_index("symbol")
    cols = st.columns(len(chosen))
    for col, symbol in zip(cols, chosen):
        if symbol in last.index:
            row = last.loc[symbol]
            col.metric(symbol, f"{row['price']:,.6g}", f"{row['change_pct_24h']:+.2f}% 24h")
    since = int(time.time() * 1000) - WINDOWS[window] * 60_000
    for symbol in chosen:
        bars = queries.bars(runtime.db, symbol, since_ms=since, limit=WINDOWS[window])
        if bars.empty:
            st.info(f"No market data for {symbol} yet; the feed writes a bar every minute.")
            continue
        st.plotly_chart(candles(symbol, resample(bars)), width="stretch", key=f"chart-{symbol}")


live()
