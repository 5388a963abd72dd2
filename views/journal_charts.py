"""The Journal page's charts, built from the journal's closed trades (plain plotly, no Streamlit)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pipeline.journal import analytics

UP, DOWN = "#26a69a", "#ef5350"


def equity_chart(closed: pd.DataFrame) -> go.Figure:
    curve = analytics.equity_curve(closed)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    fig.add_trace(
        go.Scatter(
            x=curve["time"], y=curve["equity"], mode="lines+markers", name="equity", line=dict(color=UP, shape="hv")
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=curve["time"], y=curve["drawdown"], fill="tozeroy", name="drawdown", line=dict(color=DOWN, shape="hv")
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="cumulative P&L", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", row=2, col=1)
    fig.update_layout(
        height=420,
        margin=dict(l=10, r=10, t=30, b=10),
        showlegend=False,
        title=dict(text="Equity curve", x=0.01),
        uirevision="equity",
    )
    return fig


def calendar_chart(closed: pd.DataFrame) -> go.Figure:
    """A weeks x weekdays heatmap of daily P&L (the last 53 weeks), red below 0 and green above."""
    daily = analytics.daily_pnl(closed).set_index("date")
    last = daily.index.max()
    first = max(daily.index.min(), last - pd.Timedelta(weeks=53))
    days = pd.date_range(first - pd.Timedelta(days=first.weekday()), last, freq="D")
    grid = pd.DataFrame(
        {
            "date": days,
            "pnl": daily["pnl"].reindex(days).to_numpy(),
            "trades": daily["trades"].reindex(days).fillna(0).to_numpy(),
        }
    )
    grid["week"] = (grid["date"] - pd.to_timedelta(grid["date"].dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
    grid["weekday"] = grid["date"].dt.day_of_week
    grid["label"] = grid["date"].dt.strftime("%a %Y-%m-%d") + " · " + grid["trades"].astype(int).astype(str) + " trades"
    z = grid.pivot(index="weekday", columns="week", values="pnl").reindex(range(7))
    text = grid.pivot(index="weekday", columns="week", values="label").reindex(range(7))
    fig = go.Figure(
        go.Heatmap(
            z=z.to_numpy(),
            x=list(z.columns),
            y=list(analytics.WEEKDAYS),
            customdata=text.to_numpy(),
            colorscale="RdYlGn",
            zmid=0,
            xgap=2,
            ygap=2,
            hovertemplate="%{customdata}<br>P&L %{z:+,.2f}<extra></extra>",
            colorbar=dict(title="P&L"),
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="week of", type="category")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title=dict(text="Daily P&L", x=0.01))
    return fig


def breakdown_chart(closed: pd.DataFrame, by: analytics.BreakdownBy, title: str) -> go.Figure:
    table = analytics.breakdown(closed, by)
    keys = table["key"].astype(str)
    fig = go.Figure(
        go.Bar(
            x=keys,
            y=table["net_pnl"],
            marker_color=[UP if v >= 0 else DOWN for v in table["net_pnl"]],
            customdata=table[["trades", "win_rate", "expectancy"]].to_numpy(),
            hovertemplate="%{x}<br>net P&L %{y:+,.2f}<br>%{customdata[0]} trades · win rate "
            "%{customdata[1]:.0%}<br>expectancy %{customdata[2]:+,.2f}<extra></extra>",
        )
    )
    fig.update_xaxes(type="category", title_text=title)
    fig.update_yaxes(title_text="net P&L")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10))
    return fig
