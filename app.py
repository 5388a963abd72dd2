"""Trader's Desk: page config, navigation and the shared sidebar."""

from __future__ import annotations

import streamlit as st

from runtime import page_runtime
from storage import status

st.set_page_config(page_title="Trader's Desk", page_icon=":material/candlestick_chart:", layout="wide")

pages = st.navigation(
    [
        st.Page("views/market.py", title="Market", icon=":material/candlestick_chart:", default=True),
        st.Page("views/stocks.py", title="Stocks", icon=":material/monitoring:"),
        st.Page("views/analysis.py", title="Analysis", icon=":material/newspaper:"),
        st.Page("views/signals.py", title="Signals", icon=":material/insights:"),
        st.Page("views/portfolio.py", title="Portfolio", icon=":material/account_balance_wallet:"),
        st.Page("views/backtest.py", title="Backtest", icon=":material/history:"),
        st.Page("views/optimise.py", title="Optimise", icon=":material/tune:"),
        st.Page("views/journal.py", title="Journal", icon=":material/menu_book:"),
        st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("views/whatif.py", title="What-if", icon=":material/alt_route:", url_path="whatif"),
        st.Page("views/trade.py", title="Trade", icon=":material/candlestick_chart:", visibility="hidden"),
        st.Page("views/imports.py", title="Import", icon=":material/upload_file:"),
        st.Page("views/pipeline.py", title="Pipeline", icon=":material/account_tree:"),
        st.Page("views/settings.py", title="Settings", icon=":material/settings:"),
    ],
    expanded=True,  # every page in the sidebar, not the first ten and a "View more"
)

runtime = page_runtime()

with st.sidebar:
    st.caption(
        f"Bus: **{runtime.bus.name}**"
        + (f" · {runtime.config.kafka_bootstrap_servers}" if runtime.bus.name == "kafka" else "")
    )
    down = [s.name for s in status.stages(runtime.db) if not s.running]
    if down:
        st.warning(f"Stopped: {', '.join(down)}")

pages.run()
