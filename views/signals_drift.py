"""The Signals page's drift band (called from ``views/signals.py``): each active model's live hit rate
and profit after fees over the drift monitor's window, against its walk-forward figures with the
band an alarm is judged by (``storage.drift``, written by the ``drift-monitor`` worker)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from storage import drift
from storage.db import Database

STATE_ICON = {"ok": "✅ ok", "below": "🔻 below", "above": "🔺 above", "warming": "⏳ warming up"}


def band_figure(history: pd.DataFrame, title: str) -> go.Figure:
    fig = go.Figure(
        [
            go.Scatter(x=history["time"], y=history["hit_hi"], mode="lines", line=dict(width=0), showlegend=False),
            go.Scatter(
                x=history["time"],
                y=history["hit_lo"],
                mode="lines",
                fill="tonexty",
                fillcolor="rgba(38,166,154,0.18)",
                line=dict(width=0),
                name="band",
            ),
            go.Scatter(
                x=history["time"], y=history["wf_accuracy"], mode="lines", name="walk-forward", line=dict(dash="dot")
            ),
            go.Scatter(x=history["time"], y=history["hit_rate"], mode="lines+markers", name="live hit rate"),
        ]
    )
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title=dict(text=title, x=0.01))
    fig.update_yaxes(title_text="hit rate", tickformat=".0%")
    return fig


def drift_section(db: Database, window_min: int, z: float) -> None:
    """Draw the latest state of every model, then one model's band over time."""
    st.subheader("Drift: live against walk-forward")
    latest = drift.latest(db)
    if latest.empty:
        st.info(
            "The drift monitor checks each active model every minute once it has live signals and bars.",
            icon=":material/monitor_heart:",
        )
        return
    st.caption(
        f"Over the last {window_min} minutes of bars, a model's live hit rate and profit after fees against its "
        f"walk-forward figures, with a band of {z:g} standard errors. Leaving the band raises an alert (and a "
        "notifier message)."
    )
    shown = latest.assign(state=latest["state"].map(lambda s: STATE_ICON.get(s, s)))
    st.dataframe(
        shown[
            [
                "symbol",
                "model",
                "version",
                "state",
                "periods",
                "hit_rate",
                "hit_lo",
                "hit_hi",
                "wf_accuracy",
                "profit_pct",
                "profit_lo",
                "profit_hi",
            ]
        ],
        hide_index=True,
        width="stretch",
        key="drift_latest",
        column_config={
            "hit_rate": st.column_config.NumberColumn("live hit rate", format="percent"),
            "hit_lo": st.column_config.NumberColumn("band low", format="percent"),
            "hit_hi": st.column_config.NumberColumn("band high", format="percent"),
            "wf_accuracy": st.column_config.NumberColumn("walk-forward", format="percent"),
            "profit_pct": st.column_config.NumberColumn("live profit %", format="%+.2f"),
            "profit_lo": st.column_config.NumberColumn("profit band low", format="%+.2f"),
            "profit_hi": st.column_config.NumberColumn("profit band high", format="%+.2f"),
        },
    )
    pairs = [f"{s} · {m}" for s, m in zip(latest["symbol"], latest["model"])]
    picked = st.selectbox("Band of", pairs, key="drift_pick")
    if picked:
        symbol, model = picked.split(" · ")
        history = drift.history(db, symbol, model).dropna(subset=["hit_rate"])
        if history.empty:
            st.caption("No judged window yet.")
        else:
            st.plotly_chart(band_figure(history, f"{symbol} {model}"), width="stretch", key="drift_band")
