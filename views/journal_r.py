"""The Journal page's analytics in R (called from ``views/journal.py`` inside its live fragment):
expectancy in R, the R distribution, the MFE/MAE scatter and breakdowns by setup, tag, hour and
weekday in R. R comes from each trade's stop or its setup's default risk; the excursions from the
``excursions`` worker's results (``storage.excursions``). Trades it could not measure are counted
and listed with the reason, never drawn at zero."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pipeline.journal import analytics
from pipeline.journal.excursions import RiskDefaults, with_r
from pipeline.journal.r_stats import r_breakdown, r_histogram, r_summary, scatter_rows

UP, DOWN = "#26a69a", "#ef5350"
R_BREAKDOWNS: dict[str, analytics.BreakdownBy] = {
    "Setup": "setup",
    "Tag": "tag",
    "Hour (UTC)": "hour",
    "Weekday": "weekday",
    "Symbol": "symbol",
}
EXCURSION_COLUMNS = ["status", "reason", "mfe", "mae", "mfe_pct", "mae_pct", "mfe_r", "mae_r", "captured_pct"]


def rated(closed: pd.DataFrame, measured: pd.DataFrame, risk: RiskDefaults) -> pd.DataFrame:
    """Closed trades with their R and, where measured, their excursions (``status`` None: not yet)."""
    frame = with_r(closed, risk)
    if measured.empty:
        return frame.assign(**dict.fromkeys(EXCURSION_COLUMNS))
    return frame.merge(measured[["trade_id", *EXCURSION_COLUMNS]], on="trade_id", how="left")


def histogram_chart(frame: pd.DataFrame) -> go.Figure:
    bins = r_histogram(frame)
    fig = go.Figure(
        go.Bar(
            x=(bins["lo"] + bins["hi"]) / 2,
            y=bins["trades"],
            width=(bins["hi"] - bins["lo"]) * 0.9,
            marker_color=[UP if lo >= 0 else DOWN for lo in bins["lo"]],
            customdata=bins[["lo", "hi"]].to_numpy(),
            hovertemplate="%{customdata[0]:+.1f} R to %{customdata[1]:+.1f} R: %{y} trades<extra></extra>",
        )
    )
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title=dict(text="R distribution", x=0.01))
    fig.update_xaxes(title_text="R")
    fig.update_yaxes(title_text="trades")
    return fig


def scatter_chart(frame: pd.DataFrame) -> go.Figure:
    shown, _ = scatter_rows(frame)
    won = pd.to_numeric(shown["r"]) > 0
    fig = go.Figure()
    for name, part, color in (("winners", shown[won], UP), ("losers", shown[~won], DOWN)):
        fig.add_trace(
            go.Scatter(
                x=part["mae_r"],
                y=part["mfe_r"],
                mode="markers",
                name=name,
                marker=dict(color=color, size=8, opacity=0.75),
                customdata=part[["trade_id", "symbol", "r"]].to_numpy(),
                hovertemplate="%{customdata[1]} %{customdata[0]}<br>MAE %{x:.2f} R · MFE %{y:.2f} R<br>"
                "result %{customdata[2]:+.2f} R<extra></extra>",
            )
        )
    fig.update_layout(
        height=340, margin=dict(l=10, r=10, t=30, b=10), title=dict(text="MFE against MAE (in R)", x=0.01)
    )
    fig.update_xaxes(title_text="MAE (R against you)")
    fig.update_yaxes(title_text="MFE (R for you)")
    return fig


def breakdown_chart(frame: pd.DataFrame, by: analytics.BreakdownBy, title: str) -> go.Figure:
    table = r_breakdown(frame, by)
    fig = go.Figure(
        go.Bar(
            x=table["key"].astype(str),
            y=table["expectancy_r"],
            marker_color=[UP if v >= 0 else DOWN for v in table["expectancy_r"]],
            customdata=table[["trades", "win_rate", "total_r"]].to_numpy(),
            hovertemplate="%{x}<br>expectancy %{y:+.2f} R<br>%{customdata[0]} trades · win rate "
            "%{customdata[1]:.0%} · total %{customdata[2]:+.1f} R<extra></extra>",
        )
    )
    fig.update_xaxes(type="category", title_text=title)
    fig.update_yaxes(title_text="expectancy (R)")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def r_section(closed: pd.DataFrame, measured: pd.DataFrame, risk: RiskDefaults) -> None:
    """Draw the R part of the analytics tab."""
    frame = rated(closed, measured, risk)
    s = r_summary(frame)
    shown, unmeasured = scatter_rows(frame)
    st.markdown("**In R**")
    tiles = [
        ("Expectancy (R)", "—" if s["expectancy_r"] is None else f"{s['expectancy_r']:+.2f} R", "Mean R a trade"),
        ("Total R", f"{s['total_r']:+.1f} R", None),
        (
            "Risk from a stop",
            f"{s['from_stop']} of {s['trades']}",
            f"The others take {risk.default_pct:g}% of the entry (or their setup's default) as 1R",
        ),
        ("Measured on bars", f"{len(shown)} of {len(frame)}", "Trades whose MFE and MAE the bars could measure"),
    ]
    for col, (label, value, help_) in zip(st.columns(4), tiles):
        col.metric(label, value, help=help_, border=True)
    left, right = st.columns(2)
    left.plotly_chart(histogram_chart(frame), width="stretch", key="j_r_hist")
    right.plotly_chart(scatter_chart(frame), width="stretch", key="j_r_scatter")
    for tab, (title, by) in zip(st.tabs([f"R by {t.lower()}" for t in R_BREAKDOWNS]), R_BREAKDOWNS.items()):
        with tab:
            st.plotly_chart(breakdown_chart(frame, by, title), width="stretch", key=f"j_r_by_{by}")
    if unmeasured:
        missing = frame[frame["status"].isna() | (frame["status"] != "ok")]
        reasons = missing["reason"].fillna("not measured yet (the excursions worker runs every few seconds)")
        st.caption(f"{unmeasured} trades have no MFE/MAE yet:")
        st.dataframe(
            pd.DataFrame({"trade": missing["trade_id"], "symbol": missing["symbol"], "why": reasons}).head(200),
            hide_index=True,
            width="stretch",
            key="j_r_unmeasured",
        )
