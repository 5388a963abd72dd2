"""Stocks: a live last-trade ticker per subscribed symbol from the low-latency path (the runtime's
fan-out, in process or Redis), candlesticks from the stored bars with a timeframe picker, the
market's status (NYSE hours: "market closed, opens …" is not an alarm) and each stock feed's health.

The ticker refreshes every half second, reading only the fan-out's last trade per symbol (a dict
copy), so a trade shows within a second of the feed delivering it; the chart and the feeds every
five seconds from the store and the published worker status.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from pipeline.stage_catalog import STOCK_SOURCES
from pipeline.stocks.feeds import feed_state
from pipeline.stocks.hours import market_hours
from runtime import page_runtime
from storage import status, stocks

TIMEFRAMES = {"1Min": 390, "5Min": 390, "1Hour": 350, "1Day": 250}

runtime = page_runtime()
st.title("Stocks")
symbols = list(runtime.config.stock_symbols)


def _when(ms: object) -> str:
    if not isinstance(ms, (int, float)):
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(market_hours().calendar.tz).strftime("%H:%M:%S ET")


@st.fragment(run_every="0.5s")
def ticker() -> None:
    market = market_hours().status()
    color = "green" if market.open else "gray"
    st.markdown(f":{color}-badge[{market.label}]", help="NYSE regular session, holidays and early closes")
    latest = runtime.fanout.latest()
    stored = stocks.latest_trades(runtime.db) if len(latest) < len(symbols) else {}
    cols = st.columns(len(symbols) or 1)
    for col, symbol in zip(cols, symbols):
        trade = latest.get(symbol) or stored.get(symbol)
        with col.container(border=True, key=f"ticker-{symbol}"):
            if trade is None:
                st.metric(symbol, "—")
                st.caption("no trade yet" + ("" if market.open else f" · {market.label}"))
                continue
            st.metric(symbol, f"{float(trade['price']):,.2f}")  # type: ignore[arg-type]
            live = "live" if symbol in latest else "last stored"
            st.caption(f"{float(trade['size']):g} shares at {_when(trade['timestamp'])} · {live}")  # type: ignore[arg-type]
    stats = runtime.fanout.stats()
    st.caption(
        f"Fast path ({runtime.fanout.describe()}): {stats.published:,} trades published, "
        f"{stats.delivered:,} delivered to {stats.subscribers} subscriber(s), **{stats.dropped:,} dropped**"
        + ("" if stats.connected else f" · not connected: {stats.last_error}")
    )


def candles(symbol: str, bars: pd.DataFrame, timeframe: str) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.02)
    fig.add_trace(
        go.Candlestick(
            x=bars["time"], open=bars["open"], high=bars["high"], low=bars["low"], close=bars["close"], name=symbol
        ),
        row=1,
        col=1,
    )
    colors = ["#26a69a" if c >= o else "#ef5350" for o, c in zip(bars["open"], bars["close"])]
    fig.add_trace(go.Bar(x=bars["time"], y=bars["volume"], marker_color=colors, name="volume"), row=2, col=1)
    fig.update_layout(
        height=460,
        margin=dict(l=10, r=10, t=30, b=10),
        showlegend=False,
        xaxis_rangeslider_visible=False,
        title=dict(text=f"{symbol} · {timeframe}", x=0.01),
        uirevision=f"{symbol}-{timeframe}",
    )
    if timeframe != "1Day":  # nights and weekends are gaps of no trading, not of the chart
        fig.update_xaxes(rangebreaks=[dict(bounds=["sat", "mon"]), dict(bounds=[20, 13.5], pattern="hour")])
    fig.update_yaxes(title_text="USD", row=1, col=1)
    return fig


left, right = st.columns([2, 3])
chosen = left.selectbox("Symbol", symbols or stocks.symbols(runtime.db), key="stocks_symbol")
timeframe = right.segmented_control("Timeframe", list(TIMEFRAMES), default="1Min", key="stocks_timeframe") or "1Min"

ticker()


@st.fragment(run_every="5s")
def chart_and_feeds() -> None:
    if chosen:
        rows = stocks.bars(runtime.db, chosen, timeframe, TIMEFRAMES[timeframe])
        if not rows:
            st.info(f"No {timeframe} bars for {chosen} yet; a feed writes one when a minute with trades ends.")
        else:
            frame = pd.DataFrame(rows, columns=list(stocks.BAR_FIELDS))
            frame["time"] = pd.to_datetime(frame["start"], unit="ms", utc=True).dt.tz_convert("America/New_York")
            st.plotly_chart(candles(chosen, frame, timeframe), width="stretch", key="stocks-chart")
    st.subheader("Feeds")
    market = market_hours().status()
    now = time.time()
    feeds = [feed_state(s, market, now) for s in status.stages(runtime.db) if s.name in STOCK_SOURCES]
    if not feeds:
        st.info("No stock feed runs: set STOCK_SOURCE (the stock simulator runs by default).")
        return
    table = pd.DataFrame(
        [
            {
                "feed": f["name"],
                "state": f["state"],
                "market": f["market"],
                "published": f["produced"],
                "dead letters": f["dead_lettered"],
                "fast path dropped": (f["fast_path"] or {}).get("dropped", 0),
                "last error": f["last_error"] or "",
            }
            for f in feeds
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")


chart_and_feeds()
