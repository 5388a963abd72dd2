"""Signals: the live signal feed, training, and every model's out-of-sample quality next to baselines."""

from __future__ import annotations

import time

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pipeline.config import ML_MODEL_NAMES
from pipeline.jobs.training import Source
from runtime import page_runtime
from storage import signals as signal_store
from storage import status
from views.signals_drift import drift_section

runtime = page_runtime()
config = runtime.config
st.title("Signals")
st.caption(
    f"Models predict the {config.ml_horizon_bars}-bar forward return or direction, never the price level. "
    "Every figure here is out-of-sample (walk-forward, a gap of the horizon between training and test) "
    f"and sits next to the baselines traded the same way after {config.ml_fee_bps:g} bps fees. "
    f"Signal mapping: BUY above {config.live_signal_pcts[0]:+g} %, SELL below {config.live_signal_pcts[1]:+g} %, "
    "else HOLD"
    + (
        " (the simulator's: seed 001's +-1.5 % is out of a random walk's reach)."
        if config.live_signal_pcts != (config.ml_buy_pct, config.ml_sell_pct)
        else "."
    )
)

SOURCES: dict[str, Source] = {
    "Stored bars": "store",
    "Simulator history": "simulator",
    "Candle file on this machine": "file",
}


def ml_stage_notes() -> list[str]:
    """What the ml stage says about itself: skipped ticks and model files that failed to load."""
    ml = status.stage(runtime.db, "ml")
    if ml is None or not ml.running:
        return ["The ml stage is not running (add `ml` to STAGES)."]
    notes = [f"{n:,} ticks {why}" for why, n in ml.details.get("skipped", {}).items() if n]
    return notes + list(ml.details.get("load_errors", []))


with st.expander("Train models", expanded=not runtime.registry.records(active_only=True)):
    with st.form("train"):
        left, right = st.columns(2)
        symbols = left.multiselect("Symbols", list(config.symbols), default=list(config.symbols[:1]))
        models = right.multiselect("Models", list(ML_MODEL_NAMES), default=list(config.ml_models))
        # the simulator's own history is the natural training set when the simulator is the feed
        source_label = left.radio(
            "Train on", list(SOURCES), horizontal=True, index=1 if "simulator" in config.market_sources else 0
        )
        bars = right.number_input(
            "Most recent bars (0 = all / default)", min_value=0, max_value=2_000_000, value=0, step=1000
        )
        path = st.text_input(
            "Candle file path (for 'Candle file'): a Binance kline CSV or timestamp,open,high,low,close,volume", ""
        )
        submitted = st.form_submit_button("Train", type="primary")
    if submitted:
        source = SOURCES[source_label]
        problems = [
            m
            for m, bad in (
                ("pick at least one symbol", not symbols),
                ("pick at least one model", not models),
                ("give the candle file's path", source == "file" and not path.strip()),
            )
            if bad
        ]
        if problems:
            st.error("Cannot train: " + "; ".join(problems) + ".")
        else:
            runtime.train(
                tuple(symbols), tuple(models), source=source, bars=int(bars) or None, path=path.strip() or None
            )


@st.fragment(run_every="1s")
def training_progress() -> None:
    job = runtime.training
    if job is None:
        return
    state = job.snapshot()
    if state.running:
        if job.name == "ml:first-run":
            st.caption(
                "First start: quick default models train on 3,000 bars of the simulator's history, with no click "
                "needed. Train on more history or on real candles here when they are done."
            )
        st.progress(state.progress, text=f"Training: {state.message}")
    else:
        took = (state.finished_at or time.time()) - (state.started_at or time.time())
        if state.trained:
            st.success(f"Trained in {took:.0f} s: {', '.join(state.trained)}. The ml stage loads them within seconds.")
        for error in state.errors:
            st.error(error)


training_progress()


@st.fragment(run_every="2s")
def live_feed() -> None:
    st.subheader("Live signals")
    latest = signal_store.latest(runtime.db)
    if latest.empty:
        st.info("No signals yet. Signals appear once a model is trained for a symbol and ticks arrive.")
    else:
        shown = latest[
            [
                "symbol",
                "model",
                "time",
                "signal",
                "expected_change_pct",
                "confidence",
                "current_price",
                "predicted_value",
                "model_version",
            ]
        ]
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            column_config={
                "expected_change_pct": st.column_config.NumberColumn("expected %", format="%+.3f"),
                "confidence": st.column_config.ProgressColumn(
                    "confidence", min_value=0.0, max_value=1.0, format="%.2f"
                ),
                "time": st.column_config.DatetimeColumn("time (UTC)", format="HH:mm:ss"),
            },
        )
        actionable = signal_store.signals(runtime.db, actionable=True, limit=50)
        if not actionable.empty:
            st.caption("Latest BUY and SELL signals")
            st.dataframe(
                actionable[["time", "symbol", "model", "signal", "expected_change_pct", "confidence", "current_price"]],
                hide_index=True,
                width="stretch",
            )
    for note in ml_stage_notes():
        st.caption(note)


live_feed()

drift_section(runtime.db, config.drift_window_min, config.drift_z)

st.subheader("Model quality (out-of-sample)")
records = runtime.registry.records()
if not records:
    st.info("No trained model yet. Train one above, or run `python -m pipeline train`.")
    st.stop()

active = [r for r in records if r.active]


def best_baseline(baselines: dict) -> tuple[str, float | None]:
    scored = [(name, b.get("accuracy")) for name, b in baselines.items() if b.get("accuracy") is not None]
    return max(scored, key=lambda x: x[1]) if scored else ("-", None)


rows = []
for r in active:
    name, acc = best_baseline(r.baselines)
    rows.append(
        {
            "symbol": r.symbol,
            "model": r.model,
            "version": r.version,
            "accuracy": r.metrics.get("accuracy"),
            "base rate up": r.metrics.get("base_rate_up"),
            "best baseline": f"{name} {acc:.3f}" if acc is not None else "-",
            "profit %": r.metrics.get("profit_pct"),
            "buy & hold %": r.baselines.get("buy_and_hold", {}).get("profit_pct"),
            "trades": r.metrics.get("trades"),
            "R2": r.metrics.get("r2"),
            "MAE %": r.metrics.get("mae_pct"),
            "samples": r.metrics.get("samples"),
            "trained on": f"{pd.to_datetime(r.train_start, unit='ms'):%Y-%m-%d %H:%M} – "
            f"{pd.to_datetime(r.train_end, unit='ms'):%Y-%m-%d %H:%M}",
            "load error": r.load_error or "",
        }
    )
st.dataframe(
    pd.DataFrame(rows),
    hide_index=True,
    width="stretch",
    column_config={
        "accuracy": st.column_config.NumberColumn(format="%.3f"),
        "base rate up": st.column_config.NumberColumn(format="%.3f"),
        "profit %": st.column_config.NumberColumn(format="%+.2f"),
        "buy & hold %": st.column_config.NumberColumn(format="%+.2f"),
        "R2": st.column_config.NumberColumn(format="%.4f"),
        "MAE %": st.column_config.NumberColumn(format="%.3f"),
    },
)

pick_symbol = st.selectbox("Symbol", sorted({r.symbol for r in active}), key="signals_symbol")
of_symbol = [r for r in active if r.symbol == pick_symbol]

compare = []
for r in of_symbol:
    compare.append(
        {
            "who": r.model,
            "kind": "model",
            "accuracy": r.metrics.get("accuracy"),
            "profit %": r.metrics.get("profit_pct"),
        }
    )
if of_symbol:
    for name, b in of_symbol[0].baselines.items():
        compare.append(
            {"who": name, "kind": "baseline", "accuracy": b.get("accuracy"), "profit %": b.get("profit_pct")}
        )
frame = pd.DataFrame(compare)
left, right = st.columns(2)
left.plotly_chart(
    px.bar(
        frame.dropna(subset=["accuracy"]), x="who", y="accuracy", color="kind", title="Direction accuracy vs baselines"
    ).update_layout(height=320, yaxis_range=[0.3, 0.7]),
    width="stretch",
)
right.plotly_chart(
    px.bar(frame, x="who", y="profit %", color="kind", title="Profit after fees vs baselines").update_layout(
        height=320
    ),
    width="stretch",
)

pick_model = st.selectbox("Model", [r.model for r in of_symbol], key="signals_model")
record = next(r for r in of_symbol if r.model == pick_model)
report = record.report or {}
c1, c2, c3 = st.columns(3)
confusion = report.get("confusion")
if confusion:
    c1.plotly_chart(
        px.imshow(
            confusion,
            text_auto=True,
            x=["pred down", "pred up"],
            y=["down", "up"],
            color_continuous_scale="Blues",
            title="Confusion matrix",
        ).update_layout(height=320, coloraxis_showscale=False),
        width="stretch",
    )
calibration = pd.DataFrame(report.get("calibration") or [])
if not calibration.empty and calibration["count"].sum():
    calibration = calibration[calibration["count"] > 0]
    fig = go.Figure(
        [
            go.Scatter(x=[0.5, 1], y=[0.5, 1], mode="lines", name="perfect", line=dict(dash="dot", color="grey")),
            go.Scatter(
                x=calibration["mean_confidence"],
                y=calibration["hit_rate"],
                mode="lines+markers",
                name=pick_model,
                text=calibration["count"],
                hovertemplate="confidence %{x:.2f}<br>hit rate %{y:.2f}<br>n=%{text}",
            ),
        ]
    )
    fig.update_layout(
        title="Calibration of confidence",
        height=320,
        xaxis_title="confidence",
        yaxis_title="hit rate",
        showlegend=False,
    )
    c2.plotly_chart(fig, width="stretch")
importances = report.get("importances")
if importances:
    imp = pd.Series(importances).sort_values()
    c3.plotly_chart(
        px.bar(x=imp.values, y=imp.index, orientation="h", title="Feature importances").update_layout(
            height=320, xaxis_title="", yaxis_title=""
        ),
        width="stretch",
    )
else:
    c3.caption("This model has no feature importances.")

st.caption("Versions")
st.dataframe(
    pd.DataFrame(
        [
            {
                "version": r.version,
                "active": bool(r.active),
                "created": pd.to_datetime(r.created_at, unit="ms"),
                "samples": r.n_samples,
                "accuracy": r.metrics.get("accuracy"),
                "profit %": r.metrics.get("profit_pct"),
                "load error": r.load_error or "",
            }
            for r in records
            if r.symbol == pick_symbol and r.model == pick_model
        ]
    ),
    hide_index=True,
    width="stretch",
)
