"""Analysis: one stock's analysis (seed 003). The price with its alerts marked, the aggregate score
over time, the technical components, the news with each item's sentiment, and the alert feed.

Reads the store only (``storage.analysis``, ``storage.stocks``), never a stage; refreshes every
five seconds in a fragment.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from runtime import page_runtime
from storage import analysis, stocks

MARKERS = {
    "buy_signal": ("triangle-up", "#26a69a"),
    "sell_signal": ("triangle-down", "#ef5350"),
    "risk_alert": ("x", "#ff9800"),
}

runtime = page_runtime()
st.title("Analysis")
known = list(dict.fromkeys([*runtime.config.stock_symbols, *analysis.symbols(runtime.db)]))
symbol = st.selectbox("Symbol", known, key="analysis_symbol")


def _time(ms: object) -> str:
    if not isinstance(ms, (int, float)):
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def price_chart(sym: str, alerts: list[dict[str, object]]) -> go.Figure | None:
    rows = stocks.bars(runtime.db, sym, "1Min", 390)
    timeframe = "1Min"
    if not rows:
        rows, timeframe = stocks.bars(runtime.db, sym, "1Day", 250), "1Day"
    if not rows:
        return None
    frame = pd.DataFrame(rows, columns=list(stocks.BAR_FIELDS))
    frame["time"] = pd.to_datetime(frame["start"], unit="ms", utc=True)
    fig = go.Figure(
        go.Candlestick(
            x=frame["time"], open=frame["open"], high=frame["high"], low=frame["low"], close=frame["close"], name=sym
        )
    )
    first = int(frame["start"].iloc[0])
    for kind, (marker, color) in MARKERS.items():
        shown = [a for a in alerts if a["alert_type"] == kind and int(a["timestamp"]) >= first]  # type: ignore[call-overload]
        if not shown:
            continue
        times = pd.to_datetime([int(a["timestamp"]) for a in shown], unit="ms", utc=True)  # type: ignore[call-overload]
        prices = frame.set_index("time")["close"].reindex(times, method="ffill").fillna(frame["close"].iloc[-1])
        fig.add_trace(
            go.Scatter(
                x=times,
                y=prices.to_numpy(),
                mode="markers",
                name=kind,
                marker=dict(symbol=marker, size=13, color=color),
                text=[str(a["message"]) for a in shown],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        height=420,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_rangeslider_visible=False,
        title=dict(text=f"{sym} · {timeframe} · alerts marked", x=0.01),
        uirevision=sym,
    )
    return fig


def score_chart(points: list[dict[str, object]]) -> go.Figure:
    frame = pd.DataFrame(points)
    frame["time"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    fig = go.Figure()
    for column, name, width in (
        ("final_score", "final score", 3),
        ("technical", "technical", 1),
        ("sentiment", "sentiment", 1),
    ):
        fig.add_trace(
            go.Scatter(x=frame["time"], y=frame[column], mode="lines+markers", name=name, line=dict(width=width))
        )
    fig.update_layout(
        height=280,
        margin=dict(l=10, r=10, t=30, b=10),
        yaxis=dict(range=[-1.05, 1.05]),
        title=dict(text="Aggregate score over time", x=0.01),
    )
    return fig


@st.fragment(run_every="5s")
def board() -> None:
    if not symbol:
        st.info("No stock symbol: set SUBSCRIBED_SYMBOLS, or import news (python -m pipeline news import FILE).")
        return
    found = analysis.latest_results(runtime.db, symbol)
    points = analysis.aggregates(runtime.db, symbol, limit=500)
    alerts = analysis.alerts(runtime.db, symbol, limit=200)
    last = points[-1] if points else None
    cols = st.columns(5)
    cols[0].metric("Final score", "—" if last is None else f"{last['final_score']:+.2f}")
    cols[1].metric("Recommendation", "—" if last is None else str(last["recommendation"]))
    target = None if last is None else last["target_price"]
    cols[2].metric("Target price", "—" if target is None else f"{target:,.2f}")
    for col, kind in zip(cols[3:], ("technical", "sentiment")):
        r = found.get(kind)
        col.metric(
            kind.title(),
            "—" if r is None else f"{r.score:+.2f}",
            None if r is None else f"confidence {r.confidence:.2f}",
            delta_color="off",
        )
    chart = price_chart(symbol, alerts)
    if chart is None:
        st.info(f"No bars for {symbol} yet.")
    else:
        st.plotly_chart(chart, width="stretch", key="analysis-price")
    if points:
        st.plotly_chart(score_chart(points), width="stretch", key="analysis-score")
    else:
        st.info("No aggregate yet: it comes with the first technical or sentiment result.")

    left, right = st.columns(2)
    with left:
        st.subheader("Technical components")
        tech = found.get("technical")
        if tech is None:
            st.caption("No technical result yet (it needs 27 bars).")
        else:
            comps = tech.details.get("components", {})
            st.dataframe(
                pd.DataFrame([{"component": k, "score": v["score"], "weight": v["weight"]} for k, v in comps.items()]),
                hide_index=True,
                width="stretch",
                key="analysis-components",
            )
            st.caption(
                f"{tech.details.get('bars')} bars · last close {tech.details.get('last_close'):,.2f} · "
                f"move over 15 bars {tech.details.get('move_pct', 0):+.2f}% · {_time(tech.timestamp)}"
            )
    with right:
        st.subheader("News")
        sent = found.get("sentiment")
        for note in sent.details.get("notes", []) if sent else []:
            st.warning(note)
        items = analysis.news(runtime.db, symbol, limit=50)
        if not items:
            st.caption("No news for this symbol yet.")
        else:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "published": _time(i["published_ms"]),
                            "title": i["title"],
                            "sentiment": i["sentiment"],
                            "model": i["sentiment_model"] or "not scored yet",
                            "source": i["source"],
                        }
                        for i in items
                    ]
                ),
                hide_index=True,
                width="stretch",
                key="analysis-news",
            )
    st.subheader("Alerts")
    if not alerts:
        st.caption("No alert for this symbol yet.")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "time": _time(a["timestamp"]),
                        "type": a["alert_type"],
                        "priority": a["priority"],
                        "message": a["message"],
                    }
                    for a in alerts
                ]
            ),
            hide_index=True,
            width="stretch",
            key="analysis-alerts",
        )


board()
