"""The trade detail's chart (plain plotly, no Streamlit): candlesticks around the trade, every fill,
the stop and the target (or the R ladder), the MFE and MAE points, and the models' signals."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

UP, DOWN = "#26a69a", "#ef5350"
SIGNAL_MARKS = {"BUY": ("triangle-up", "#2e7d32"), "SELL": ("triangle-down", "#c62828")}


def _utc(ms: Any) -> pd.Timestamp:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC")


def trade_figure(
    trade: dict[str, Any],
    bars: pd.DataFrame,
    fills: list[dict[str, Any]],
    excursion: dict[str, Any] | None,
    signals: pd.DataFrame,
    target: float | None,
) -> go.Figure:
    """The chart of one trade. ``bars``: ``start, open, high, low, close``; ``fills``: the ledger's
    fills of the position (empty for a whole trade, whose entry and exit are drawn instead);
    ``excursion``: its stored MFE/MAE (None or not ok: no points); ``signals``: stored signals
    around the entry; ``target``: the planned take-profit when known (else the 1R, 2R and 3R prices)."""
    fig = go.Figure()
    times = pd.to_datetime(bars["start"], unit="ms", utc=True)
    fig.add_trace(
        go.Candlestick(
            x=times,
            open=bars["open"],
            high=bars["high"],
            low=bars["low"],
            close=bars["close"],
            name=str(trade["symbol"]),
            increasing_line_color=UP,
            decreasing_line_color=DOWN,
        )
    )
    long = str(trade["side"]).upper() == "BUY"
    points = (
        [
            {"time": f["time"], "price": f["price"], "side": f["side"], "label": f"{f['side']} {f['quantity']:g}"}
            for f in fills
        ]
        if fills
        else [
            {"time": trade["entry_time"], "price": trade["entry_price"], "side": trade["side"], "label": "entry"},
            *(
                [
                    {
                        "time": trade["exit_time"],
                        "price": trade["exit_price"],
                        "side": "SELL" if long else "BUY",
                        "label": "exit",
                    }
                ]
                if pd.notna(trade.get("exit_time"))
                else []
            ),
        ]
    )
    for side, (shape, color) in SIGNAL_MARKS.items():
        mine = [p for p in points if str(p["side"]).upper() == side]
        if mine:
            fig.add_trace(
                go.Scatter(
                    x=[_utc(p["time"]) for p in mine],
                    y=[p["price"] for p in mine],
                    mode="markers+text",
                    text=[p["label"] for p in mine],
                    textposition="bottom center" if side == "BUY" else "top center",
                    name=f"{side.lower()} fills",
                    marker=dict(symbol=shape, size=15, color=color, line=dict(width=1.5, color="white")),
                    hovertemplate=side + " %{text} at %{y:.6g}<extra></extra>",
                )
            )
    start, end = times.min(), times.max()
    levels: list[tuple[str, float, str]] = []
    stop = trade.get("stop_loss")
    if stop is not None and pd.notna(stop):
        levels.append(("stop", float(stop), DOWN))
    if target is not None:
        levels.append(("target", float(target), UP))
    elif stop is not None and pd.notna(stop):
        unit = abs(float(trade["entry_price"]) - float(stop))
        direction = 1.0 if long else -1.0
        levels += [(f"{k}R", float(trade["entry_price"]) + direction * k * unit, "#90a4ae") for k in (1, 2, 3)]
    for label, price, color in levels:
        fig.add_trace(
            go.Scatter(
                x=[start, end],
                y=[price, price],
                mode="lines",
                name=label,
                line=dict(color=color, dash="dash", width=1.5),
                hovertemplate=f"{label} %{{y:.6g}}<extra></extra>",
            )
        )
    if excursion is not None and excursion.get("status") == "ok":
        for label, price, at, color in (
            ("MFE", excursion["best_exit_price"], excursion["best_exit_time"], UP),
            ("MAE", excursion["worst_price"], excursion["worst_time"], DOWN),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[_utc(at)],
                    y=[price],
                    mode="markers+text",
                    text=[label],
                    textposition="middle right",
                    name=label,
                    marker=dict(symbol="diamond", size=12, color=color, line=dict(width=1, color="black")),
                    hovertemplate=label + " %{y:.6g}<extra></extra>",
                )
            )
    if not signals.empty:
        for side, (shape, color) in SIGNAL_MARKS.items():
            part = signals[signals["signal"] == side]
            if not part.empty:
                fig.add_trace(
                    go.Scatter(
                        x=part["time"],
                        y=part["current_price"],
                        mode="markers",
                        name=f"model {side}",
                        opacity=0.55,
                        marker=dict(symbol=shape, size=8, color=color),
                        customdata=part[["model", "confidence", "expected_change_pct"]],
                        hovertemplate=side + " %{customdata[0]} at %{customdata[1]:.2f} confidence, "
                        "expected %{customdata[2]:+.3f}%<extra></extra>",
                    )
                )
    fig.update_layout(
        height=520,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_rangeslider_visible=False,
        legend=dict(orientation="h", y=1.04, x=0.0),
        title=dict(text=f"{trade['symbol']} {trade['side']} {float(trade['quantity']):g}", x=0.01),
    )
    fig.update_yaxes(title_text="price")
    return fig
