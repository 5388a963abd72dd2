"""The Journal page's review parts (called from ``views/journal.py``): links to each trade's detail
page, a day's trades under the calendar, and the entry form's pre-trade check with the paper entry
it may place. Pipeline threads are never touched: the check reads the store, the entry is a message
on ``crypto.orders``."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from pipeline.errors import BadMessageError, PipelineError
from pipeline.journal.analytics import to_utc
from pipeline.journal.pretrade import Verdict
from pipeline.journal.pretrade_service import PretradeSettings, place_paper_entry, run_check
from runtime import Runtime

SEVERITY = {"high": "red", "medium": "orange", "low": "blue"}
VERDICT_KEY = "pretrade_verdict"


def trade_link(trade_id: str) -> str:
    """The detail page's URL of a trade (relative, so it works under any base path)."""
    return "trade?" + urllib.parse.urlencode({"id": trade_id})


def trade_links(trade_ids: list[str], most: int = 5) -> None:
    """Links (in this tab) to the detail pages of the first ``most`` of ``trade_ids``; plain links
    when the page runs without the app's navigation (a page script run alone)."""
    shown = trade_ids[:most]
    try:
        for col, trade_id in zip(st.columns(len(shown) or 1), shown):
            col.page_link(
                "views/trade.py", label=trade_id, query_params={"id": trade_id}, icon=":material/candlestick_chart:"
            )
    except StreamlitAPIException:
        st.markdown(" · ".join(f"[{t}]({trade_link(t)})" for t in shown))


def day_trades(closed: pd.DataFrame) -> None:
    """Under the calendar: pick a day, get its closed trades with links to their detail pages."""
    if closed.empty:
        return
    days = to_utc(closed["exit_time"]).dt.strftime("%Y-%m-%d")
    choice = st.selectbox("Trades of a day (UTC)", sorted(set(days), reverse=True), index=None, key="j_day")
    if choice is None:
        return
    picked = closed[days == choice].assign(detail=lambda f: f["trade_id"].map(trade_link))
    st.dataframe(
        picked[["detail", "symbol", "side", "quantity", "entry_price", "exit_price", "pnl"]],
        hide_index=True,
        width="stretch",
        key="j_day_trades",
        column_config={
            "detail": st.column_config.LinkColumn("trade", display_text=r"trade\?id=(.*)"),
            "pnl": st.column_config.NumberColumn("P&L", format="%+.2f"),
        },
    )


def settings_of(runtime: Runtime) -> PretradeSettings:
    c = runtime.config
    return PretradeSettings(c.behaviour, c.pretrade_cooldown_min, c.ml_models)


def check_planned(runtime: Runtime, fields: dict[str, Any], slots: dict[str, Any], outcome: Any) -> None:
    """Run the pre-trade check of the form's planned trade; put errors under their fields."""
    body = {
        "symbol": fields.get("symbol"),
        "side": fields.get("side"),
        "quantity": fields.get("quantity"),
        "stop": fields.get("stop_loss"),
        "price": fields.get("entry_price"),
    }
    try:
        verdict = run_check(runtime.db, runtime.config.user_id, body, settings_of(runtime))
    except BadMessageError as exc:
        names = {"stop": "stop_loss", "price": "entry_price"}
        for v in exc.violations:
            slot = slots.get(names.get(v.field, v.field)) or outcome
            slot.error(f"**{v.field}** = `{v.value!r}` breaks the rule: {v.rule}", icon=":material/error:")
        st.session_state.pop(VERDICT_KEY, None)
        return
    st.session_state[VERDICT_KEY] = (verdict, float(str(body["stop"])))


def verdict_panel(runtime: Runtime) -> None:
    """The last check's answer, and the paper entry it allows."""
    held = st.session_state.get(VERDICT_KEY)
    if held is None:
        return
    verdict, stop = held
    assert isinstance(verdict, Verdict)
    with st.container(border=True, key="pretrade_result"):
        risk = verdict.risk
        head = (
            f"**Pre-trade check** · {verdict.side} {verdict.quantity:g} {verdict.symbol} at {verdict.price:,.6g} "
            f"({verdict.price_source}) · 1R = {risk['amount']:,.2f} ({risk['pct']:.2f}% of the price)"
        )
        st.markdown(head)
        st.caption("Targets: " + ", ".join(f"{k} {v:,.6g}" for k, v in risk["targets"].items()))
        if not verdict.trips:
            st.success("No behavioural rule trips right now.", icon=":material/check_circle:")
        for trip in verdict.trips:
            color = SEVERITY.get(trip.severity, "gray")
            st.markdown(f":{color}-badge[{trip.severity}] **{trip.rule.replace('_', ' ')}**: {trip.message}")
        if verdict.models:
            views = ", ".join(f"{m['model']} {m['signal']} ({float(m['confidence']):.2f})" for m in verdict.models)
            st.caption(f"The models now: {views}")
        else:
            st.caption(f"No model has a signal of {verdict.symbol} yet.")
        if not verdict.allowed:
            st.error(
                f"Cooldown on ({verdict.cooldown_minutes} min): the paper account refuses this entry.",
                icon=":material/block:",
            )
        elif verdict.side == "BUY" and st.button("Place it on the paper account", key="pretrade_place"):
            try:
                order_id = place_paper_entry(runtime.producer, verdict, stop)
            except PipelineError as exc:
                st.error(str(exc))
            else:
                st.success(f"Paper order `{order_id}` sent; it fills at the next tick.", icon=":material/check_circle:")
