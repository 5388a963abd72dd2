"""The Market page's first-run panel (called from ``views/market.py``): while the trader's journal is
empty, it says what the desk is doing on its first start (training the default models on the
simulator's history, then signals, then the paper account's first order) and where to go next:
import trades, connect an exchange, train on real candles. It reads the runtime's training job and
the store only."""

from __future__ import annotations

import streamlit as st

from runtime import Runtime
from storage import journal, orders, status
from storage import signals as signal_store

HIDE = "first_run_hidden"


def first_run_panel(runtime: Runtime) -> None:
    """Draw the panel on a new desk (nothing in the trader's journal yet), unless hidden."""
    db, config = runtime.db, runtime.config
    if st.session_state.get(HIDE) or journal.symbols(db, config.user_id):
        return
    with st.container(border=True, key="first_run"):
        st.markdown("**Welcome to your desk.**")
        job = runtime.training
        state = job.snapshot() if job is not None else None
        has_models = bool(runtime.registry.records(active_only=True))
        has_signals = not signal_store.latest(db).empty if has_models else False
        placed = not orders.orders(db, limit=1).empty
        if state is not None and state.running:
            st.progress(
                state.progress, text=f"Training quick default models on the simulator's history: {state.message}"
            )
        elif not has_models:
            st.caption(
                "No model is trained yet. Train one on the Signals page (the simulator's history takes a minute)."
            )
        elif not has_signals:
            st.caption("Models are ready; signals start within seconds, once the ml stage has loaded them.")
        elif not placed:
            decision = status.stage(db, "decision")
            why = (decision.details.get("skipped") if decision is not None else None) or {}
            top = max(why.items(), key=lambda kv: kv[1])[0] if why else "waiting for a signal"
            st.caption(
                "Signals flow. The paper account places its first order when a model is confident enough "
                f"(most signals so far: {top}). The simulator is a random walk, so these trades are the desk "
                "working, not an edge."
            )
        else:
            st.caption(
                "The paper account is trading: see Portfolio, and Compare once it closes positions. On the "
                "simulator, a random walk, its trades are the desk working, not an edge."
            )
        st.markdown("**Where next**")
        c = st.columns(4)
        c[0].page_link("views/imports.py", label="Import your trades", icon=":material/upload_file:")
        c[1].page_link("views/settings.py", label="Connect an exchange", icon=":material/settings:")
        c[2].page_link("views/signals.py", label="Train on real candles", icon=":material/insights:")
        if c[3].button("Hide this", key="first_run_hide"):
            st.session_state[HIDE] = True
            st.rerun()
