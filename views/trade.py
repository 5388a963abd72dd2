"""Trade: one trade on its chart (``?id=<trade_id>``), reached from the journal's table, its calendar
and its alerts: candlesticks around it, every fill, the stop and the target, the MFE and MAE points,
what the models signalled around the entry, and its excursions and R.

Reads ``storage.journal``, ``storage.ledger`` (fills), ``storage.excursions``, ``storage.market``,
``storage.signals`` and ``storage.orders`` (a paper trade's target); the id is only ever a bound
query parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from pipeline.journal.compare import MAX_SIGNAL_AGE_MS, agreement_of
from pipeline.journal.excursions import with_r
from pipeline.journal.paper import is_paper
from runtime import page_runtime
from storage import excursions, journal, ledger, market, orders
from storage import signals as signal_store
from views.trade_chart import trade_figure

MINUTE_MS = 60_000
MAX_BARS = 2000
SIGNALS_AROUND_MS = 30 * MINUTE_MS

runtime = page_runtime()
db, config = runtime.db, runtime.config
st.title("Trade")
st.page_link("views/journal.py", label="Back to the journal", icon=":material/arrow_back:")

trade_id = st.query_params.get("id", "")
trade = journal.trade(db, trade_id) if trade_id else None
if trade is None:
    st.info(
        "Open a trade from the journal's table, its calendar or an alert."
        if not trade_id
        else "No trade with this id in the journal.",
        icon=":material/search:",
    )
    st.stop()
    raise SystemExit  # st.stop() raises; this line only satisfies type checkers


def when(ms: Any) -> str:
    if ms is None or pd.isna(ms):
        return "—"
    return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def coarser(bars: pd.DataFrame, limit: int = MAX_BARS) -> pd.DataFrame:
    """Merge 1-minute bars so the chart never draws more than ``limit`` candles."""
    if len(bars) <= limit:
        return bars
    minutes = -(-len(bars) // limit)
    frame = bars.assign(bucket=bars["start"] - bars["start"] % (minutes * MINUTE_MS))
    out = frame.groupby("bucket").agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last")
    )
    return out.reset_index().rename(columns={"bucket": "start"})


closed = pd.notna(trade["exit_time"])
entry_ms = int(trade["entry_time"])
exit_ms = int(trade["exit_time"]) if closed else entry_ms
rated = with_r(pd.DataFrame([trade]), config.journal_risk).iloc[0] if closed else None
excursion = excursions.of_trade(db, trade_id)

st.subheader(f"{trade['symbol']} {trade['side']} {float(trade['quantity']):g} · {trade['kind'].replace('_', ' ')}")
st.caption(
    f"{trade['user_id']} · entered {when(trade['entry_time'])} at {float(trade['entry_price']):g}"
    + (f" · exited {when(trade['exit_time'])} at {float(trade['exit_price']):g}" if closed else " · open")
    + f" · `{trade_id}`"
)

cols = st.columns(4) + st.columns(4)
pnl = rated["net_pnl"] if rated is not None else None
tiles = [
    ("P&L", "—" if pnl is None else f"{pnl:+,.2f}", "Net of fees, in quote currency"),
    (
        "R",
        "—" if rated is None else f"{rated['r']:+.2f} R",
        "P&L over the risk "
        + ("from the stop" if rated is not None and rated["risk_source"] == "stop" else "of the setup's default")
        + (f" ({rated['risk_per_unit']:.6g} a unit)" if rated is not None else ""),
    ),
]
ok = excursion is not None and excursion["status"] == "ok"
if ok and excursion is not None:
    tiles += [
        ("MFE", f"{excursion['mfe_pct']:.2f}% · {excursion['mfe_r']:.2f} R", f"{excursion['mfe']:.6g} a unit"),
        ("MAE", f"{excursion['mae_pct']:.2f}% · {excursion['mae_r']:.2f} R", f"{excursion['mae']:.6g} a unit"),
        (
            "Best exit in hindsight",
            f"{excursion['best_exit_price']:.6g}",
            f"at {when(excursion['best_exit_time'])}",
        ),
        (
            "Kept of the MFE",
            "—" if excursion["captured_pct"] is None else f"{excursion['captured_pct']:.0f}%",
            "How much of the best move the exit kept",
        ),
    ]
for col, (label, value, help_) in zip(cols, tiles):
    col.metric(label, value, help=help_, border=True)
if not closed:
    st.caption("An open position: excursions and R come once it is closed.")
elif excursion is None:
    st.caption("Excursions not computed yet: the excursions worker measures new trades within seconds.")
elif not ok:
    st.warning(
        f"No excursions for this trade: {excursion['reason']}. Set BARS_BACKFILL=binance to fetch missing "
        "1-minute bars, or replay a candle file of the symbol (MARKET_SOURCE=replay).",
        icon=":material/block:",
    )

span = max(exit_ms - entry_ms, MINUTE_MS)
pad = max(30 * MINUTE_MS, span // 2)
bars = market.ohlc_between(db, str(trade["symbol"]), entry_ms - pad, exit_ms + pad)
fills = (
    ledger.fills_between(db, str(trade["user_id"]), str(trade["symbol"]), entry_ms, exit_ms)
    if trade["kind"] != "trade"
    else []
)
target = None
if is_paper(str(trade["user_id"])) and closed:
    order = orders.position_order(db, str(trade["symbol"]), entry_ms, exit_ms)
    target = (order or {}).get("risk_management", {}).get("take_profit")
around = signal_store.between(
    db, str(trade["symbol"]), entry_ms - SIGNALS_AROUND_MS, entry_ms + SIGNALS_AROUND_MS, models=config.ml_models
)
shown = around[around["signal"] != "HOLD"]
if bars.empty:
    st.info(f"No {trade['symbol']} bars around this trade, so no chart.", icon=":material/candlestick_chart:")
else:
    st.plotly_chart(
        trade_figure(trade, coarser(bars), fills, excursion, shown, target), width="stretch", key="trade_chart"
    )
    notes = [f"{len(fills)} fills of the position" if fills else "entry and exit of the whole trade"]
    notes.append("the planned target" if target is not None else "the 1R, 2R and 3R prices from the stop")
    st.caption("Marked: " + "; ".join(notes) + ".")

st.markdown("**What the models said at the entry**")
rows = []
for model in config.ml_models:
    said = signal_store.signal_at(db, str(trade["symbol"]), model, entry_ms, MAX_SIGNAL_AGE_MS)
    rows.append(
        {
            "model": model,
            "signal": None if said is None else said["signal"],
            "confidence": None if said is None else said["confidence"],
            "expected %": None if said is None else said["expected_change_pct"],
            "with the trade": agreement_of(str(trade["side"]), None if said is None else str(said["signal"])),
        }
    )
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="trade_models")
if around.empty:
    st.caption("No stored signals within 30 minutes of this entry (the signal store keeps two days).")

with st.expander("Notes, tags and setup", expanded=bool(trade["notes"] or trade["tags"] or trade["setup"])):
    st.write(f"**Setup:** {trade['setup'] or '—'} · **Tags:** {', '.join(trade['tags']) or '—'}")
    st.text(trade["notes"] or "")
