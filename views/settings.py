"""Settings: the configuration the pipeline runs with (secrets hidden) and how to change it."""

from __future__ import annotations

from typing import Any

import streamlit as st

from pipeline.config import ML_MODEL_NAMES
from pipeline.errors import ConfigError
from pipeline.stage_catalog import MARKET_SOURCES
from pipeline.topics import CATALOG
from pipeline.trading.risk import SIZINGS
from runtime import page_runtime, restart_runtime, save_settings, settings_env
from storage import status

runtime = page_runtime()
config = runtime.config
st.title("Settings")
st.write(
    "The pipeline reads its settings once at start, from the environment and `.env` "
    "(see `.env.example`; the environment wins). The form below writes `.env` and restarts the pipeline."
)

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
    source = left.selectbox(
        "Market source",
        MARKET_SOURCES,
        index=MARKET_SOURCES.index(config.market_sources[0]),
        format_func=lambda s: f"{s}: {SOURCE_HELP[s]}",
    )
    symbols = right.text_input("Symbols (comma-separated, like BTCUSDT)", ",".join(config.symbols))
    replay_files = left.text_input(
        "Replay files (SYMBOL=path, comma-separated; or a Binance file name)", config.replay_files
    )
    speed = right.number_input(
        "Replay speed (x real time; 0 = as fast as possible)",
        min_value=0.0,
        value=float(config.replay_speed),
        step=10.0,
    )
    models = left.multiselect("Models the ml stage runs", list(ML_MODEL_NAMES), default=list(config.ml_models))
    horizon = right.number_input("Horizon (bars ahead)", min_value=1, max_value=1440, value=config.ml_horizon_bars)
    buy = left.number_input("BUY above expected change %", min_value=0.0, value=float(config.ml_buy_pct), step=0.1)
    sell = right.number_input("SELL below expected change %", max_value=0.0, value=float(config.ml_sell_pct), step=0.1)
    if config.live_signal_pcts != (config.ml_buy_pct, config.ml_sell_pct):
        st.caption("Unset on the simulator: signals use +-0.02 % (docs/ml.md, First start) until you change these.")
    risk, exchange = config.risk, config.exchange
    with st.expander("Paper trading: decision, risk and the virtual exchange", expanded=False):
        if config.live_risk != risk:
            st.caption(
                f"Unset on the simulator: the decision stage acts on signals at {config.live_risk.high_confidence:g} "
                "confidence (docs/ml.md, First start) until you change the levels below."
            )
        left, right = st.columns(2)
        decision_model = left.selectbox(
            "Trading model of the decision stage", ML_MODEL_NAMES, index=ML_MODEL_NAMES.index(config.decision_model)
        )
        confirm_models = right.multiselect(
            "Confirm models (a medium signal acts when one agrees)",
            ML_MODEL_NAMES,
            default=list(config.decision_confirm_models),
        )
        c = st.columns(3)
        trading: dict[str, Any] = {
            "STOP_LOSS_PCT": c[0].number_input(
                "Stop-loss % under the entry",
                min_value=0.01,
                max_value=99.0,
                value=float(risk.stop_loss_pct),
                step=0.5,
                format="%g",
            ),
            "TAKE_PROFIT_PCT": c[1].number_input(
                "Take-profit % over the entry",
                min_value=0.01,
                max_value=10_000.0,
                value=float(risk.take_profit_pct),
                step=0.5,
                format="%g",
            ),
            "TRAILING_STOP_PCT": c[2].number_input(
                "Trailing stop % (0 = off)",
                min_value=0.0,
                max_value=99.0,
                value=float(risk.trailing_stop_pct),
                step=0.5,
                format="%g",
            ),
            "POSITION_SIZING": c[0].selectbox(
                "Position sizing",
                SIZINGS,
                index=SIZINGS.index(risk.sizing),
                help="fixed_fraction: each entry is a share of equity; fixed_risk: a stop-out loses a share of equity",
            ),
            "POSITION_PCT": c[1].number_input(
                "Position % of equity (fixed_fraction)",
                min_value=0.01,
                max_value=100.0,
                value=float(risk.position_pct),
                step=1.0,
                format="%g",
            ),
            "RISK_PER_TRADE_PCT": c[2].number_input(
                "Risk per trade % of equity (fixed_risk)",
                min_value=0.01,
                max_value=100.0,
                value=float(risk.risk_pct),
                step=0.5,
                format="%g",
            ),
            "MAX_SYMBOL_EXPOSURE_PCT": c[0].number_input(
                "Max exposure per symbol %",
                min_value=0.01,
                max_value=100.0,
                value=float(risk.max_symbol_exposure_pct),
                step=5.0,
                format="%g",
            ),
            "MAX_TOTAL_EXPOSURE_PCT": c[1].number_input(
                "Max total exposure %",
                min_value=0.01,
                max_value=100.0,
                value=float(risk.max_total_exposure_pct),
                step=5.0,
                format="%g",
            ),
            "MIN_ORDER_USDT": c[2].number_input(
                "Minimum order (USDT)", min_value=0.0, value=float(risk.min_order_usdt), step=5.0, format="%g"
            ),
            "STARTING_BALANCE_USDT": c[0].number_input(
                "Starting balance (USDT)",
                min_value=1.0,
                value=float(exchange.starting_balance),
                step=1000.0,
                format="%g",
                help="The paper account is its orders replayed from this balance: a change changes its cash.",
            ),
            "EXCHANGE_FEE_BPS": c[1].number_input(
                "Fee (bps of the notional)",
                min_value=0.0,
                max_value=1000.0,
                value=float(exchange.fee_bps),
                step=1.0,
                format="%g",
            ),
            "EXCHANGE_SLIPPAGE_BPS": c[2].number_input(
                "Slippage of market orders (bps)",
                min_value=0.0,
                max_value=1000.0,
                value=float(exchange.slippage_bps),
                step=1.0,
                format="%g",
            ),
            "LIMIT_ORDER_TTL_MINUTES": c[0].number_input(
                "Limit order time to live (minutes)", min_value=1, value=exchange.limit_ttl_ms // 60_000, step=5
            ),
            "DECISION_MEDIUM_CONFIDENCE": c[1].number_input(
                "Medium confidence (acts when a confirm model agrees)",
                min_value=0.0,
                max_value=1.0,
                value=float(risk.medium_confidence),
                step=0.05,
            ),
            "DECISION_HIGH_CONFIDENCE": c[2].number_input(
                "High confidence (acts alone)",
                min_value=0.0,
                max_value=1.0,
                value=float(risk.high_confidence),
                step=0.05,
            ),
        }
    save = st.form_submit_button("Save and restart the pipeline", type="primary")
if save:
    changes = {
        "MARKET_SOURCE": source,
        "SYMBOLS": symbols.replace(" ", ""),
        "REPLAY_FILES": replay_files.strip(),
        "REPLAY_SPEED": f"{speed:g}",
        "ML_MODELS": ",".join(models),
        "ML_HORIZON_BARS": str(int(horizon)),
    }
    # the thresholds too, so the simulator's mapping (docs/ml.md, "First start") holds until the trader sets one
    if (buy, sell) != (config.ml_buy_pct, config.ml_sell_pct):
        changes.update({"ML_BUY_THRESHOLD_PCT": f"{buy:g}", "ML_SELL_THRESHOLD_PCT": f"{sell:g}"})
    current = {
        "DECISION_MODEL": config.decision_model,
        "DECISION_CONFIRM_MODELS": ",".join(config.decision_confirm_models) or "none",
        "STOP_LOSS_PCT": risk.stop_loss_pct,
        "TAKE_PROFIT_PCT": risk.take_profit_pct,
        "TRAILING_STOP_PCT": risk.trailing_stop_pct,
        "POSITION_SIZING": risk.sizing,
        "POSITION_PCT": risk.position_pct,
        "RISK_PER_TRADE_PCT": risk.risk_pct,
        "MAX_SYMBOL_EXPOSURE_PCT": risk.max_symbol_exposure_pct,
        "MAX_TOTAL_EXPOSURE_PCT": risk.max_total_exposure_pct,
        "MIN_ORDER_USDT": risk.min_order_usdt,
        "STARTING_BALANCE_USDT": exchange.starting_balance,
        "EXCHANGE_FEE_BPS": exchange.fee_bps,
        "EXCHANGE_SLIPPAGE_BPS": exchange.slippage_bps,
        "LIMIT_ORDER_TTL_MINUTES": exchange.limit_ttl_ms // 60_000,
        "DECISION_MEDIUM_CONFIDENCE": risk.medium_confidence,
        "DECISION_HIGH_CONFIDENCE": risk.high_confidence,
    }
    wanted = {
        "DECISION_MODEL": decision_model,
        "DECISION_CONFIRM_MODELS": ",".join(m for m in confirm_models if m != decision_model) or "none",
        **trading,
    }
    # the trading settings are written only when changed, so .env keeps only what the trader chose
    changes.update({k: v if isinstance(v, str) else f"{v:.12g}" for k, v in wanted.items() if v != current[k]})
    env = settings_env()
    if env.get("STAGES"):  # an explicit stage list names the source itself: swap it there too
        stages = [s for s in env["STAGES"].split(",") if s.strip() and s.strip() not in MARKET_SOURCES]
        changes["STAGES"] = ",".join([source, *stages])
    try:
        high, medium = float(trading["DECISION_HIGH_CONFIDENCE"]), float(trading["DECISION_MEDIUM_CONFIDENCE"])
        if high < medium:
            raise ConfigError(
                f"DECISION_HIGH_CONFIDENCE={high:g} must be at least DECISION_MEDIUM_CONFIDENCE={medium:g}"
            )
        overridden = save_settings(changes)
    except ConfigError as exc:
        st.error(f"Not saved: {exc}")
    else:
        st.session_state["settings_notice"] = (
            f"Saved, but the environment sets {', '.join(overridden)}, which wins over `.env`."
            if overridden
            else "Saved to `.env`; the pipeline restarted with the new settings."
        )
        restart_runtime()
        st.rerun()

api = status.stage(runtime.db, "api")
if api is not None:
    address = f"http://{runtime.config.api_host}:{runtime.config.api_port}"
    if api.running:
        st.success(f"Trades API: {address} (interactive docs at {address}/docs)")
    else:
        st.error(f"The trades API is not running: {api.last_error or 'stopped'}")
st.json(runtime.config.redacted())
st.subheader("Topic catalog")
st.dataframe(
    [
        {
            "topic": s.name,
            "partitions": s.partitions,
            "cleanup": s.cleanup,
            "retention h": s.retention_ms / 3_600_000 if s.retention_ms else None,
            "compression": s.compression,
            "description": s.description,
        }
        for s in CATALOG.values()
    ],
    hide_index=True,
    width="stretch",
)
