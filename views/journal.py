"""Journal: enter a trade, review the journal and its analytics, annotate trades, read the alerts.

Everything shown is read through ``storage.journal``. A new trade goes to ``raw-trades`` through
``submit_entry`` and shows here once the journal stages have stored it (about a second later).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from pipeline.errors import BadMessageError, PipelineError
from pipeline.journal import analytics
from pipeline.journal.formats import escape_cell
from pipeline.journal.sources import submit_entry
from runtime import page_runtime
from storage import excursions as excursion_store
from storage import journal
from views.journal_charts import breakdown_chart, calendar_chart, equity_chart
from views.journal_r import r_section
from views.journal_review import check_planned, day_trades, trade_link, trade_links, verdict_panel

EMOTIONS = ["calm", "confident", "focused", "anxious", "fearful", "greedy", "frustrated", "bored", "FOMO", "revenge"]
SEVERITY = {
    "high": ("red", ":material/error:"),
    "medium": ("orange", ":material/warning:"),
    "low": ("blue", ":material/info:"),
}
LABELS = {
    "symbol": "Symbol",
    "side": "Side",
    "entry_price": "Entry price",
    "entry_time": "Entry date and time",
    "exit_price": "Exit price",
    "exit_time": "Exit date and time",
    "quantity": "Quantity",
    "fees": "Fees",
    "stop_loss": "Stop loss",
    "notes": "Notes",
    "tags": "Tags",
    "setup": "Setup",
    "emotion": "Emotion",
}
BREAKDOWNS: dict[str, analytics.BreakdownBy] = {
    "Symbol": "symbol",
    "Tag": "tag",
    "Setup": "setup",
    "Weekday": "weekday",
    "Hour (UTC)": "hour",
}
EXPORT_COLUMNS = [
    "trade_id",
    "symbol",
    "side",
    "kind",
    "entry_price",
    "exit_price",
    "quantity",
    "entry_time",
    "exit_time",
    "pnl",
    "fees",
    "stop_loss",
    "notes",
    "tags",
    "setup",
    "emotion",
    "lot_id",
    "source",
]
ALL = "All"
MAX_ROWS = 1000
EMPTY_JOURNAL = "No trades yet: add one above or import a CSV on the Import page."
UP, DOWN = "#26a69a", "#ef5350"

runtime = page_runtime()
db, user = runtime.db, runtime.config.user_id
st.title("Journal")


# --------------------------------------------------------------------------- helpers


def iso_utc(at: datetime | None) -> str | None:
    """Return ``2024-11-16T14:35:00Z`` for a naive datetime meant as UTC, or None."""
    return None if at is None else at.strftime("%Y-%m-%dT%H:%M:%SZ")


def money(value: float | None, sign: bool = False) -> str:
    return "—" if value is None else f"{value:+,.2f}" if sign else f"{value:,.2f}"


def utc(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(ms.astype("Float64"), unit="ms", utc=True)


def market_text(context: dict[str, Any]) -> str:
    """Say what the market did around the entry: trend, 24 h change and volatility."""
    entry = context.get("entry") or {}
    if not entry or entry.get("missing"):
        return ""
    parts = [str(entry.get("trend") or "")]
    if entry.get("change_24h_pct") is not None:
        parts.append(f"{entry['change_24h_pct']:+.1f}% 24h")
    if entry.get("volatility_pct") is not None:
        parts.append(f"vol {entry['volatility_pct']:.1f}%")
    return " · ".join(p for p in parts if p)


def export_csv(rows: pd.DataFrame) -> bytes:
    """Return the journal as CSV (the generic import template's columns), every text cell escaped."""
    out = rows.reindex(columns=EXPORT_COLUMNS).copy()
    for column in ("entry_time", "exit_time"):
        out[column] = utc(out[column]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out["tags"] = out["tags"].map(lambda tags: ";".join(tags) if isinstance(tags, list) else "")
    out = out.astype(object).map(lambda v: escape_cell(v) if isinstance(v, str) else v)
    buffer = io.StringIO()
    out.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


# --------------------------------------------------------------------------- entry form

known_tags, known_setups = journal.tags(db, user), journal.setups(db, user)
st.subheader("New trade")
with st.form("journal_entry"):
    slots: dict[str, Any] = {}

    def field(col: Any, name: str, widget: str, *args: Any, **kwargs: Any) -> Any:
        """Draw one input of the form with a slot under it for the rules its value breaks."""
        value = getattr(col, widget)(LABELS[name] + kwargs.pop("suffix", ""), *args, key=f"je_{name}", **kwargs)
        slots[name] = col.container()
        return value

    number = {"value": None, "format": "%g", "step": None}
    c = st.columns(4)
    symbol = field(c[0], "symbol", "text_input", placeholder="BTCUSDT")
    side = field(c[1], "side", "selectbox", ["BUY", "SELL"])
    quantity = field(c[2], "quantity", "number_input", **number)
    fees = field(c[3], "fees", "number_input", suffix=" (quote currency)", **number)
    c = st.columns(4)
    entry_price = field(c[0], "entry_price", "number_input", **number)
    entry_time = field(
        c[1],
        "entry_time",
        "datetime_input",
        suffix=" (UTC)",
        step=60,
        format="YYYY-MM-DD",
        value=datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0),
    )
    stop_loss = field(c[2], "stop_loss", "number_input", suffix=" (optional)", **number)
    emotion = field(c[3], "emotion", "selectbox", EMOTIONS, index=None, accept_new_options=True)
    c = st.columns(4)
    exit_price = field(c[0], "exit_price", "number_input", suffix=" (blank while open)", **number)
    exit_time = field(c[1], "exit_time", "datetime_input", suffix=" (UTC)", value=None, step=60, format="YYYY-MM-DD")
    tags = field(c[2], "tags", "multiselect", known_tags, accept_new_options=True, placeholder="Pick or type tags")
    setup = field(
        c[3],
        "setup",
        "selectbox",
        known_setups,
        index=None,
        accept_new_options=True,
        placeholder="Pick or type a setup",
    )
    notes = field(st, "notes", "text_area", height=80)
    buttons = st.columns([1, 2, 5])
    submitted = buttons[0].form_submit_button("Add trade", type="primary")
    checked = buttons[1].form_submit_button(
        "Check before placing", help="Which behavioural rules this trade would trip now, its R and the models' view"
    )
    outcome = st.container()

if submitted or checked:
    fields = {
        "symbol": symbol.strip(),
        "side": side,
        "entry_price": entry_price,
        "quantity": quantity,
        "entry_time": iso_utc(entry_time),
        "exit_price": exit_price,
        "exit_time": iso_utc(exit_time),
        "fees": fees,
        "stop_loss": stop_loss,
        "notes": notes.strip() or None,
        "tags": list(tags),
        "setup": setup or None,
        "emotion": emotion or None,
    }
    fields = {k: float(v) if isinstance(v, (int, float)) else v for k, v in fields.items()}
if checked:
    check_planned(runtime, fields, slots, outcome)
verdict_panel(runtime)
if submitted:
    try:
        trade_id = submit_entry(runtime.producer, user, fields)
    except BadMessageError as exc:
        for v in exc.violations:
            name = LABELS.get(v.field, v.field or "Trade")
            slot = slots.get(v.field) or outcome
            slot.error(f"**{name}** (`{v.field}`) = `{v.value!r}` breaks the rule: {v.rule}", icon=":material/error:")
        outcome.error("Nothing was saved: fix the fields above.")
    except PipelineError as exc:
        outcome.error(f"Nothing was saved: {exc}")
    else:
        outcome.success(
            f"Trade `{trade_id}` sent to the journal; it shows below within a second or so.",
            icon=":material/check_circle:",
        )


# --------------------------------------------------------------------------- filters

st.subheader("Journal")
f = st.columns([1, 1, 1, 2])
chosen_symbol = f[0].selectbox("Symbol", [ALL, *journal.symbols(db, user)], key="jf_symbol")
chosen_tag = f[1].selectbox("Tag", [ALL, *known_tags], key="jf_tag")
chosen_setup = f[2].selectbox("Setup", [ALL, *known_setups], key="jf_setup")
picked: Any = f[3].date_input("Dates (UTC, of the exit or of the entry while open)", value=[], key="jf_dates")
dates: tuple[Any, ...] = tuple(picked) if isinstance(picked, (tuple, list)) else (picked,) if picked else ()
filters: dict[str, Any] = {
    "symbol": None if chosen_symbol == ALL else chosen_symbol,
    "tag": None if chosen_tag == ALL else chosen_tag,
    "setup": None if chosen_setup == ALL else chosen_setup,
    "since_ms": int(datetime.combine(dates[0], time(0), UTC).timestamp() * 1000) if dates else None,
    "until_ms": (
        int(datetime.combine(dates[-1] + timedelta(days=1), time(0), UTC).timestamp() * 1000) if dates else None
    ),
}
filtered = any(v is not None for v in filters.values())


# --------------------------------------------------------------------------- live parts


def metric_tiles(s: dict[str, Any]) -> None:
    pf = s["profit_factor"]
    pf_text = f"{pf:.2f}" if pf is not None else "∞" if s["gross_profit"] > 0 else "—"
    tiles = [
        ("Net P&L", money(s["net_pnl"], sign=True), "Sum of closed trades' P&L, net of fees"),
        (
            "Win rate",
            "—" if s["win_rate"] is None else f"{s['win_rate']:.0%}",
            f"{s['wins']} wins of {s['trades']} closed trades",
        ),
        ("Profit factor", pf_text, "Gross profit / gross loss"),
        ("Expectancy", money(s["expectancy"], sign=True), "Average P&L per closed trade"),
        (
            "Average R",
            "—" if s["avg_r"] is None else f"{s['avg_r']:+.2f} R",
            f"P&L / initial risk over the {s['trades_with_stop']} trades with a stop loss",
        ),
        ("Max drawdown", money(s["max_drawdown"]), "Largest fall of cumulative P&L from a peak"),
        ("Fees", money(s["fees"]), "Known fees of closed trades, in quote currency"),
        ("Closed trades", f"{s['trades']:,}", None),
    ]
    for col, (label, value, help_) in zip(st.columns(4) + st.columns(4), tiles):
        col.metric(label, value, help=help_, border=True)


def journal_table(rows: pd.DataFrame, measured: pd.DataFrame) -> None:
    view = rows.assign(
        entry=utc(rows["entry_time"]),
        exit=utc(rows["exit_time"]),
        market=rows["context"].map(market_text),
        detail=rows["trade_id"].map(trade_link),
    )
    view = view.merge(measured[["trade_id", "r", "mfe_r", "mae_r"]], on="trade_id", how="left")
    money_col = st.column_config.NumberColumn
    st.dataframe(
        view,
        hide_index=True,
        width="stretch",
        key="j_table",
        column_order=[
            "entry",
            "exit",
            "symbol",
            "side",
            "kind",
            "quantity",
            "open_quantity",
            "entry_price",
            "exit_price",
            "stop_loss",
            "pnl",
            "r",
            "mfe_r",
            "mae_r",
            "fees",
            "tags",
            "setup",
            "emotion",
            "notes",
            "market",
            "source",
            "trade_id",
            "detail",
        ],
        column_config={
            "detail": st.column_config.LinkColumn("chart", display_text="open", help="The trade on its chart"),
            "r": money_col("R", format="%+.2f", help="P&L over the risk from the stop, or the setup's default"),
            "mfe_r": money_col("MFE R", format="%.2f", help="Best move for the trade while open, in R"),
            "mae_r": money_col("MAE R", format="%.2f", help="Worst move against the trade while open, in R"),
            "entry": st.column_config.DatetimeColumn("entry (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "exit": st.column_config.DatetimeColumn("exit (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "quantity": money_col("qty", format="%g"),
            "open_quantity": money_col("open qty", format="%g"),
            "entry_price": money_col("entry", format="%g"),
            "exit_price": money_col("exit", format="%g"),
            "stop_loss": money_col("stop", format="%g"),
            "pnl": money_col("P&L", format="%+.2f", help="Net of fees, in quote currency"),
            "fees": money_col("fees", format="%.2f"),
            "tags": st.column_config.ListColumn("tags"),
            "market": st.column_config.TextColumn("market at entry"),
        },
    )


def alert_list(alerts: list[dict[str, Any]]) -> None:
    if not alerts:
        st.info(
            "No behavioural alerts. They appear here when your trades look like revenge trading, overtrading or tilt.",
            icon=":material/psychology:",
        )
        return
    for a in alerts[:50]:
        color, icon = SEVERITY.get(a["severity"], ("gray", ":material/info:"))
        when = datetime.fromtimestamp(a["timestamp"] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        with st.container(border=True):
            st.markdown(f":{color}-badge[{icon} {a['severity']}] **{a['alert_type'].replace('_', ' ')}** · {when}")
            st.text(a["message"])
            st.caption("Trades: " + ", ".join(f"`{t}`" for t in a["trade_ids"]))
            trade_links(a["trade_ids"])


@st.fragment(run_every="3s")
def live() -> None:
    rows = journal.trades(db, user, **filters, limit=MAX_ROWS)
    closed = journal.closed_trades(db, user, **filters)
    measured = excursion_store.for_user(db, user)
    if rows.empty:
        st.info("No trades match these filters." if filtered else EMPTY_JOURNAL, icon=":material/inbox:")
    else:
        metric_tiles(analytics.summary(closed))
    trades_tab, analytics_tab, alerts_tab = st.tabs(["Trades", "Analytics", "Alerts"])
    with trades_tab:
        if not rows.empty:
            journal_table(rows, measured)
            if len(rows) == MAX_ROWS:
                st.caption(f"Showing the newest {MAX_ROWS:,}; the export has them all.")
            st.download_button(
                "Export CSV",
                lambda: export_csv(journal.trades(db, user, **filters)),
                file_name="journal.csv",
                mime="text/csv",
                on_click="ignore",
                icon=":material/download:",
                key="j_export",
            )
        st.markdown("**Open positions**")
        positions = journal.open_positions(db, user, filters["symbol"])
        if positions.empty:
            st.caption("No open positions.")
        else:
            st.dataframe(
                positions.assign(opened=utc(positions["opened_at"])),
                hide_index=True,
                width="stretch",
                key="j_positions",
                column_order=["symbol", "side", "open_quantity", "avg_entry_price", "open_lots", "opened"],
                column_config={
                    "open_quantity": st.column_config.NumberColumn("open qty", format="%g"),
                    "avg_entry_price": st.column_config.NumberColumn("avg entry", format="%g"),
                    "open_lots": st.column_config.NumberColumn("lots / trades"),
                    "opened": st.column_config.DatetimeColumn("first entry (UTC)"),
                },
            )
    with analytics_tab:
        if closed.empty:
            st.info("Analytics start with your first closed trade.", icon=":material/insights:")
        else:
            st.plotly_chart(equity_chart(closed), width="stretch", key="j_equity")
            st.plotly_chart(calendar_chart(closed), width="stretch", key="j_calendar")
            day_trades(closed)
            for tab, (title, by) in zip(st.tabs(list(BREAKDOWNS)), BREAKDOWNS.items()):
                with tab:
                    st.plotly_chart(breakdown_chart(closed, by, title), width="stretch", key=f"j_by_{by}")
            r_section(closed, measured, runtime.config.journal_risk)
    with alerts_tab:
        alert_list(journal.alerts(db, user))


live()


# --------------------------------------------------------------------------- annotations


@st.fragment
def edit() -> None:
    st.subheader("Notes, tags and setup")
    rows = journal.trades(db, user, **filters, limit=MAX_ROWS)
    if rows.empty:
        st.caption("Pick a trade here to annotate it once the journal has some.")
        return
    by_id = rows.set_index("trade_id")
    describe: Callable[[str], str] = lambda tid: (  # noqa: E731
        f"{utc(pd.Series([by_id.at[tid, 'entry_time']])).iloc[0]:%Y-%m-%d %H:%M} · {by_id.at[tid, 'symbol']} "
        f"{by_id.at[tid, 'side']} {by_id.at[tid, 'quantity']:g} · {by_id.at[tid, 'kind']} · {tid}"
    )
    trade_id = st.selectbox("Trade", list(by_id.index), format_func=describe, key="je_edit_trade")
    row = by_id.loc[trade_id]
    with st.form(f"je_edit_{trade_id}"):
        new_notes = st.text_area("Notes", value=row["notes"] or "", key=f"je_edit_notes_{trade_id}")
        c = st.columns(2)
        new_tags = c[0].multiselect(
            "Tags",
            sorted({*known_tags, *row["tags"]}),
            default=row["tags"],
            accept_new_options=True,
            key=f"je_edit_tags_{trade_id}",
        )
        setups = sorted({*known_setups, *([row["setup"]] if row["setup"] else [])})
        new_setup = c[1].selectbox(
            "Setup",
            setups,
            index=setups.index(row["setup"]) if row["setup"] else None,
            accept_new_options=True,
            key=f"je_edit_setup_{trade_id}",
        )
        if st.form_submit_button("Save"):
            journal.annotate(db, trade_id, notes=new_notes, tags=new_tags, setup=new_setup)
            st.success(f"Saved the notes, tags and setup of `{trade_id}`.", icon=":material/check_circle:")


edit()
