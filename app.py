"""Trader's Desk: page config, navigation and the shared sidebar."""

from __future__ import annotations

import streamlit as st

from pipeline.errors import PipelineError
from runtime import get_runtime

st.set_page_config(page_title="Trader's Desk", page_icon=":material/candlestick_chart:", layout="wide")

pages = st.navigation([
    st.Page("pages/market.py", title="Market", icon=":material/candlestick_chart:", default=True),
    st.Page("pages/pipeline.py", title="Pipeline", icon=":material/account_tree:"),
    st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
])

try:
    runtime = get_runtime()
except PipelineError as exc:
    st.error(f"The pipeline could not start: {exc}")
    st.stop()

with st.sidebar:
    st.caption(f"Bus: **{runtime.bus.name}**"
               + (f" · {runtime.config.kafka_bootstrap_servers}" if runtime.bus.name == "kafka" else ""))
    down = [h.name for h in runtime.health() if not h.running]
    if down:
        st.warning(f"Stopped: {', '.join(down)}")

pages.run()
