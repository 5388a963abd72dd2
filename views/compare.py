"""Compare: the trader against each model's paper account on the same symbols and period (P&L, win
rate, expectancy in money and in R, drawdown, fees, equity curves), and for each of the trader's own
entries whether a model agreed at that moment.

Every account is read from the journal (``storage.journal``): the paper accounts ``paper:<model>``
are there because the ``paper-journal`` stage journals each closed paper position. The models'
agreement comes from the stored signals (``storage.signals``; the store keeps two days).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pipeline.journal import analytics
from pipeline.journal.compare import MAX_SIGNAL_AGE_MS, agreement, agreement_summary, compare, in_scope
from pipeline.journal.paper import is_paper
from runtime import page_runtime
from storage import journal
from storage import signals as signal_store
from views.journal_review import trade_link

PERIODS = {"7 days": 7, "30 days": 30, "90 days": 90, "All": None}

runtime = page_runtime()
db, config = runtime.db, runtime.config
me = config.user_id
st.title("Compare")
st.caption(
    "Your closed trades against each model's paper account, on the same symbols and the same period. "
    "A paper account's trades come from the virtual exchange, priced with its fees and slippage."
)

papers = [u for u in journal.users(db) if is_paper(u)]
if not papers:
    st.info(
        "No paper account has closed a trade yet. The paper account trades once a model is trained and confident "
        "enough (see Signals and Portfolio); each closed position then shows here.",
        icon=":material/compare_arrows:",
    )
accounts = [me, *papers]
left, mid, right = st.columns([2, 1, 3])
period = left.segmented_control("Period", list(PERIODS), default="30 days", key="cmp_period") or "30 days"
days = PERIODS[period]
since = int((datetime.now(UTC) - timedelta(days=days)).timestamp() * 1000) if days else None
closed = {a: journal.closed_trades(db, a, since_ms=since) for a in accounts}
traded = sorted(set().union(*(set(c["symbol"]) for c in closed.values())))
mine = set(closed[me]["symbol"])
shared = [s for s in traded if s in mine and any(s in set(closed[p]["symbol"]) for p in papers)]
same = mid.toggle("Same symbols only", value=bool(shared), key="cmp_same", help="Symbols you and a model both traded")
symbols = right.multiselect(
    "Symbols", traded, default=shared if same and shared else traded, key="cmp_symbols", disabled=not traded
)
scoped = {a: in_scope(c, symbols or None, since, None) for a, c in closed.items()}

table = compare(scoped, config.journal_risk)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    key="cmp_table",
    column_config={
        "net_pnl": st.column_config.NumberColumn("net P&L", format="%+.2f"),
        "win_rate": st.column_config.NumberColumn("win rate", format="percent"),
        "expectancy": st.column_config.NumberColumn("expectancy", format="%+.2f"),
        "expectancy_r": st.column_config.NumberColumn("expectancy (R)", format="%+.2f"),
        "max_drawdown": st.column_config.NumberColumn("max drawdown", format="%.2f"),
        "fees": st.column_config.NumberColumn("fees", format="%.2f"),
    },
)

fig = go.Figure()
for account, trades in scoped.items():
    if trades.empty:
        continue
    curve = analytics.equity_curve(trades)
    fig.add_trace(go.Scatter(x=curve["time"], y=curve["equity"], mode="lines", name=account, line=dict(shape="hv")))
if fig.data:
    fig.update_layout(
        height=360, margin=dict(l=10, r=10, t=30, b=10), title=dict(text="Cumulative P&L", x=0.01), uirevision="cmp"
    )
    st.plotly_chart(fig, width="stretch", key="cmp_equity")

st.subheader("Did a model agree with you?")
own = scoped[me]
if own.empty:
    st.info("Your closed trades in this period show here with each model's signal at their entry.")
else:
    models = list(config.ml_models)
    table = agreement(
        own, models, lambda s, m, at: signal_store.signal_at(db, s, m, at, MAX_SIGNAL_AGE_MS), config.journal_risk
    )
    st.dataframe(
        agreement_summary(table, models),
        hide_index=True,
        width="stretch",
        key="cmp_agreement_summary",
        column_config={
            "win_rate": st.column_config.NumberColumn("win rate", format="percent"),
            "avg_r": st.column_config.NumberColumn("average R", format="%+.2f"),
        },
    )
    shown = table.assign(
        detail=table["trade_id"].map(trade_link), entry=pd.to_datetime(table["entry_time"], unit="ms", utc=True)
    )
    st.dataframe(
        shown[["detail", "entry", "symbol", "side", "r", *models]],
        hide_index=True,
        width="stretch",
        key="cmp_agreement",
        column_config={
            "detail": st.column_config.LinkColumn("chart", display_text="open"),
            "entry": st.column_config.DatetimeColumn("entry (UTC)", format="YYYY-MM-DD HH:mm"),
            "r": st.column_config.NumberColumn("R", format="%+.2f"),
        },
    )
    st.caption(
        "A model agreed when its last signal at most two minutes before your entry said your side; "
        "'no signal' means none was stored then (the signal store keeps two days)."
    )
