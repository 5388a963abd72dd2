"""What-if: your recorded entries replayed on the stored bars under other exit rules (exit at 1R, 2R,
3R; honour the planned stop; a trailing stop; hold N bars; exit when a model says SELL), priced like
a paper trade with the virtual exchange's fees and slippage, next to what really happened.

The rules are ``pipeline.journal.whatif``'s; bars come from ``storage.market`` and signals from
``storage.signals``. Trades that cannot be replayed are listed with the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pipeline.journal.excursions import MINUTE_MS, Bars
from pipeline.journal.whatif import Rule, Signals, WhatIf, replay
from runtime import page_runtime
from storage import journal, market
from storage import signals as signal_store
from views.journal_review import trade_link

PERIODS = {"7 days": 7, "30 days": 30, "90 days": 90, "All": None}
MAX_TRADES = 20_000
UP, DOWN = "#26a69a", "#ef5350"

runtime = page_runtime()
db, config = runtime.db, runtime.config
user = config.user_id
st.title("What-if")
st.caption(
    "Your recorded entries, replayed on the stored 1-minute bars under other exit rules and priced like a paper "
    f"trade ({config.exchange.fee_bps:g} bps fee a side, {config.exchange.slippage_bps:g} bps slippage on market "
    "exits), next to what really happened. A rule watches each trade from its entry to its real exit; when it "
    "triggers nothing the trade exits as it did."
)

with st.form("whatif"):
    c = st.columns(3)
    period = c[0].selectbox("Period (by exit)", list(PERIODS), index=1)
    targets = c[1].multiselect("Exit at", [1.0, 2.0, 3.0], default=[1.0, 2.0, 3.0], format_func=lambda r: f"{r:g}R")
    stop = c[2].checkbox("Honour the planned stop", value=True)
    c = st.columns(3)
    trail = c[0].number_input("Trailing stop % (0 = off)", min_value=0.0, max_value=50.0, value=1.0, step=0.1)
    hold = c[1].number_input("Hold N bars (0 = off)", min_value=0, max_value=10_000, value=15, step=1)
    model = c[2].selectbox("Exit when this model says SELL", ["off", *config.ml_models], index=1)
    run = st.form_submit_button("Replay", type="primary")


def rules_chosen() -> tuple[Rule, ...]:
    rules = [Rule("target_r", float(r)) for r in targets]
    if stop:
        rules.append(Rule("planned_stop"))
    if trail > 0:
        rules.append(Rule("trailing_pct", float(trail)))
    if hold > 0:
        rules.append(Rule("hold_bars", int(hold)))
    if model != "off":
        rules.append(Rule("model_sell", str(model)))
    return tuple(rules)


def inputs(trades: pd.DataFrame, rules: tuple[Rule, ...]) -> tuple[dict[str, Bars], dict[str, Signals]]:
    """The bars (and the chosen model's signals) over each symbol's trades."""
    longest = max((int(r.value or 0) for r in rules if r.kind == "hold_bars"), default=0) + 1
    bars, signals = {}, {}
    for symbol, rows in trades.groupby("symbol"):
        since = int(rows["entry_time"].min()) - MINUTE_MS
        until = max(int(rows["exit_time"].max()), int(rows["entry_time"].max()) + longest * MINUTE_MS)
        frame = market.ohlc_between(db, str(symbol), since, until)
        if not frame.empty:
            bars[str(symbol)] = Bars.of(frame)
        for rule in rules:
            if rule.kind == "model_sell":
                said = signal_store.between(db, str(symbol), since, until, models=[str(rule.value)])
                if not said.empty:
                    signals[f"{symbol}/{rule.value}"] = Signals(
                        said["timestamp"].to_numpy(dtype=np.int64), said["signal"].to_numpy()
                    )
    return bars, signals


if run:
    days = PERIODS[period]
    since = int((datetime.now(UTC) - timedelta(days=days)).timestamp() * 1000) if days else None
    trades = journal.closed_trades(db, user, since_ms=since, limit=MAX_TRADES)
    rules = rules_chosen()
    if trades.empty or not rules:
        st.session_state.pop("whatif_result", None)
        st.info(
            "Pick at least one rule; the replay needs closed trades in the period."
            if not rules
            else "No closed trades in this period."
        )
    else:
        with st.spinner(f"Replaying {len(trades):,} trades under {len(rules)} rules…"):
            bars, signals = inputs(trades, rules)
            st.session_state["whatif_result"] = replay(
                trades, rules, bars, signals=signals, settings=config.exchange, risk=config.journal_risk
            )

result = st.session_state.get("whatif_result")
if isinstance(result, WhatIf):
    st.metric("What really happened", f"{result.actual_total:+,.2f}", border=True, help="Your trades' net P&L")
    st.caption(
        f"The same trades at the paper exchange's fees: {result.as_traded_total:+,.2f}. A rule's difference is "
        "against what really happened, on the trades it could replay."
    )
    summary = result.summary
    st.dataframe(
        summary,
        hide_index=True,
        width="stretch",
        key="whatif_summary",
        column_config={
            "changed": st.column_config.NumberColumn(
                "exits changed", help="Trades the rule exited before their real exit"
            ),
            "pnl": st.column_config.NumberColumn("P&L under the rule", format="%+.2f"),
            "actual_pnl": st.column_config.NumberColumn("what happened", format="%+.2f"),
            "difference": st.column_config.NumberColumn("difference", format="%+.2f"),
            "win_rate": st.column_config.NumberColumn("win rate", format="percent"),
            "avg_r": st.column_config.NumberColumn("average R", format="%+.2f"),
        },
    )
    fig = go.Figure(
        go.Bar(
            x=summary["rule"],
            y=summary["difference"],
            marker_color=[UP if v >= 0 else DOWN for v in summary["difference"]],
            hovertemplate="%{x}: %{y:+,.2f} against what happened<extra></extra>",
        )
    )
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title=dict(text="Difference per rule", x=0.01))
    st.plotly_chart(fig, width="stretch", key="whatif_chart")
    skipped = result.results[result.results["status"] == "skipped"]
    if not skipped.empty:
        st.markdown(f"**Skipped: {len(skipped)} trade-rule pairs**")
        st.dataframe(
            skipped[["trade_id", "rule", "reason"]].rename(columns={"trade_id": "trade"}),
            hide_index=True,
            width="stretch",
            key="whatif_skipped",
        )
    with st.expander("Every trade under every rule"):
        done = result.results[result.results["status"] == "ok"]
        st.dataframe(
            done.assign(detail=done["trade_id"].map(trade_link))[
                ["detail", "rule", "exit_by", "exit_price", "pnl", "actual_pnl", "difference", "r"]
            ],
            hide_index=True,
            width="stretch",
            key="whatif_trades",
            column_config={"detail": st.column_config.LinkColumn("chart", display_text="open")},
        )
