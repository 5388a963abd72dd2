"""Settings: the configuration the pipeline runs with (secrets hidden) and how to change it."""

from __future__ import annotations

import streamlit as st

from pipeline.config import MARKET_SOURCES, ML_MODEL_NAMES
from pipeline.errors import ConfigError
from pipeline.topics import CATALOG
from runtime import page_runtime, restart_runtime, save_settings, settings_env

runtime = page_runtime()
config = runtime.config
st.title("Settings")
st.write("The pipeline reads its settings once at start, from the environment and `.env` "
         "(see `.env.example`; the environment wins). The form below writes `.env` and restarts the pipeline.")

notice = st.session_state.pop("settings_notice", None)
if notice:
    (st.warning if "wins" in notice else st.success)(notice)

SOURCE_HELP = {
    "simulator": "the built-in market simulator (no network)",
    "replay": "candle files replayed at a chosen speed (REPLAY_FILES)",
    "binance-rest": "Binance REST 24 h ticker, polled",
    "binance-ws": "Binance WebSocket trade, kline and mini-ticker streams",
    "bybit-ws": "Bybit v5 public WebSocket (spot)",
    "alpaca-ws": "Alpaca crypto market-data WebSocket (needs ALPACA_API_KEY and ALPACA_API_SECRET)",
}

with st.form("market_settings"):
    st.subheader("Market data and signals")
    left, right = st.columns(2)
    source = left.selectbox("Market source", MARKET_SOURCES, index=MARKET_SOURCES.index(config.market_sources[0]),
                            format_func=lambda s: f"{s}: {SOURCE_HELP[s]}")
    symbols = right.text_input("Symbols (comma-separated, like BTCUSDT)", ",".join(config.symbols))
    replay_files = left.text_input("Replay files (SYMBOL=path, comma-separated; or a Binance file name)",
                                   config.replay_files)
    speed = right.number_input("Replay speed (x real time; 0 = as fast as possible)", min_value=0.0,
                               value=float(config.replay_speed), step=10.0)
    models = left.multiselect("Models the ml stage runs", list(ML_MODEL_NAMES), default=list(config.ml_models))
    horizon = right.number_input("Horizon (bars ahead)", min_value=1, max_value=1440, value=config.ml_horizon_bars)
    buy = left.number_input("BUY above expected change %", min_value=0.0, value=float(config.ml_buy_pct), step=0.1)
    sell = right.number_input("SELL below expected change %", max_value=0.0, value=float(config.ml_sell_pct),
                              step=0.1)
    save = st.form_submit_button("Save and restart the pipeline", type="primary")
if save:
    changes = {"MARKET_SOURCE": source, "SYMBOLS": symbols.replace(" ", ""), "REPLAY_FILES": replay_files.strip(),
               "REPLAY_SPEED": f"{speed:g}", "ML_MODELS": ",".join(models), "ML_HORIZON_BARS": str(int(horizon)),
               "ML_BUY_THRESHOLD_PCT": f"{buy:g}", "ML_SELL_THRESHOLD_PCT": f"{sell:g}"}
    env = settings_env()
    if env.get("STAGES"):  # an explicit stage list names the source itself: swap it there too
        stages = [s for s in env["STAGES"].split(",") if s.strip() and s.strip() not in MARKET_SOURCES]
        changes["STAGES"] = ",".join([source, *stages])
    try:
        overridden = save_settings(changes)
    except ConfigError as exc:
        st.error(f"Not saved: {exc}")
    else:
        st.session_state["settings_notice"] = (
            f"Saved, but the environment sets {', '.join(overridden)}, which wins over `.env`." if overridden
            else "Saved to `.env`; the pipeline restarted with the new settings.")
        restart_runtime()
        st.rerun()

api = next((h for h in runtime.health() if h.name == "api"), None)
if api is not None:
    address = f"http://{runtime.config.api_host}:{runtime.config.api_port}"
    if api.running:
        st.success(f"Trades API: {address} (interactive docs at {address}/docs)")
    else:
        st.error(f"The trades API is not running: {api.last_error or 'stopped'}")
st.json(runtime.config.redacted())
st.subheader("Topic catalog")
st.dataframe([{"topic": s.name, "partitions": s.partitions, "cleanup": s.cleanup,
               "retention h": s.retention_ms / 3_600_000 if s.retention_ms else None,
               "compression": s.compression, "description": s.description}
              for s in CATALOG.values()], hide_index=True, width="stretch")
