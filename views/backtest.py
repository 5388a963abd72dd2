"""Backtest: the live strategy (models, confirmation, risk rules, virtual exchange) on history, next to
buy-and-hold of the same symbols, with a loud warning when a model was tested on bars it learned from.

The form builds a ``BacktestRequest``; ``runtime.backtest`` runs it on its own thread and a fragment
follows its progress. The last result stays in ``st.session_state`` with the bars its charts need.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from pipeline.candle_files import CandleFolder
from pipeline.candles import CandleFileError
from pipeline.config import ML_MODEL_NAMES
from pipeline.errors import ConfigError, PipelineError
from pipeline.jobs.backtests import BacktestJob, BacktestRequest, ModelsFrom
from pipeline.jobs.training import Source
from pipeline.trading.backtest import Engine
from pipeline.trading.metrics import why_none
from pipeline.trading.risk import SIZINGS, RiskSettings
from runtime import page_runtime
from views.backtest_charts import drawdown_vs_hold, equity_vs_hold, trades_on_price

SOURCES: dict[str, Source] = {
    "Stored bars": "store",
    "Simulator history": "simulator",
    "Candle file on this machine": "file",
}
ENGINES: dict[str, Engine] = {"Fast (compiled)": "fast", "Backtrader (reference)": "backtrader"}
MODELS_FROM: dict[str, ModelsFrom] = {
    "Train on the first part of the period (out-of-sample)": "train",
    "The registry's active versions": "registry",
}
RISK_LABELS = {
    "stop_loss_pct": "Stop-loss %",
    "take_profit_pct": "Take-profit %",
    "trailing_stop_pct": "Trailing stop % (0 = off)",
    "sizing": "Position sizing",
    "position_pct": "Position % of equity (fixed fraction)",
    "risk_pct": "Risk per trade % of equity (fixed risk)",
    "max_symbol_exposure_pct": "Max exposure per symbol %",
    "max_total_exposure_pct": "Max total exposure %",
}
LABELS = {"symbols": "Symbols", "path": "Candle file", "period": "Period (UTC)", **RISK_LABELS}
MAX_CANDLES = 1500

runtime = page_runtime()
config = runtime.config
folder = CandleFolder(config.candle_dir, config.candle_max_bytes)
st.title("Backtest")
st.caption(
    "The decision stage's strategy on history: the same signals at every tick, the same risk rules, the same "
    f"virtual exchange ({config.exchange.fee_bps:g} bps fee, {config.exchange.slippage_bps:g} bps slippage), "
    "next to buy-and-hold of the same symbols (an equal split at the first bar, one fee in)."
)


# --------------------------------------------------------------------------- the form


def utc_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def risk_problems(message: str) -> dict[str, str]:
    """Split ``RiskSettings``'s ConfigError (``name=value must ...; ...``) into the rule per field."""
    out: dict[str, str] = {}
    for part in message.split("; "):
        m = re.match(r"(\w+)=(.*?) (must .*)$", part)
        if m and m.group(1) in RISK_LABELS:
            out[m.group(1)] = f"= `{m.group(2)}` breaks the rule: {m.group(3)}"
        else:
            out.setdefault("", part)
    return out


risk = config.risk
with st.form("backtest"):
    slots: dict[str, Any] = {}

    def slot(col: Any, name: str) -> None:
        slots[name] = col.container()

    left, mid, right = st.columns(3)
    symbols = left.multiselect(LABELS["symbols"], list(config.symbols), default=list(config.symbols[:1]))
    slot(left, "symbols")
    source_label = mid.radio(
        "Bars from", list(SOURCES), horizontal=True, index=1 if "simulator" in config.market_sources else 0
    )
    bars = right.number_input(
        "Most recent bars (0 = all / default)", min_value=0, max_value=2_000_000, value=0, step=1000
    )
    # a page reads candle files only from the candle folder, or an upload saved there
    left, right = st.columns(2)
    picked = left.selectbox(f"{LABELS['path']} in {config.candle_dir} (for 'Candle file')", ["—", *folder.names()])
    upload = right.file_uploader(
        "or upload one: a Binance kline CSV or timestamp,open,high,low,close,volume",
        type=["csv", "txt"],
        max_upload_size=max(config.candle_max_bytes // 2**20, 1),
    )
    slot(st, "path")
    left, mid, right = st.columns(3)
    dates: Any = left.date_input(LABELS["period"] + ", optional", value=[], format="YYYY-MM-DD")
    slot(left, "period")
    model = mid.selectbox("Trading model", ML_MODEL_NAMES, index=ML_MODEL_NAMES.index(config.decision_model))
    confirm = right.multiselect(
        "Confirm models (a medium signal acts when one agrees)",
        list(ML_MODEL_NAMES),
        default=list(config.decision_confirm_models),
    )
    left, mid, right = st.columns([2, 1, 1])
    models_from_label = left.radio("Models from", list(MODELS_FROM))
    train_pct = mid.number_input("Train on the first % of the period", min_value=5, max_value=90, value=30, step=5)
    engine_label = right.radio(
        "Engine",
        list(ENGINES),
        help="The fast engine makes backtrader's trades (proven on random cases), about 100 times faster; "
        "backtrader is the reference, and what trades live.",
    )

    st.markdown("**Risk**")
    c = st.columns(4)
    values: dict[str, Any] = {}
    for col, name, step in zip(c, ("stop_loss_pct", "take_profit_pct", "trailing_stop_pct"), (0.5, 0.5, 0.5)):
        values[name] = col.number_input(RISK_LABELS[name], value=float(getattr(risk, name)), step=step, format="%g")
        slot(col, name)
    values["sizing"] = c[3].selectbox(RISK_LABELS["sizing"], SIZINGS, index=SIZINGS.index(risk.sizing))
    slot(c[3], "sizing")
    c = st.columns(4)
    for col, name in zip(c, ("position_pct", "risk_pct", "max_symbol_exposure_pct", "max_total_exposure_pct")):
        values[name] = col.number_input(RISK_LABELS[name], value=float(getattr(risk, name)), step=1.0, format="%g")
        slot(col, name)
    submitted = st.form_submit_button("Run backtest", type="primary")
    outcome = st.container()

if submitted:
    source = SOURCES[source_label]
    problems: dict[str, str] = {}
    if not symbols:
        problems["symbols"] = "breaks the rule: pick at least one symbol"
    path = "" if picked == "—" else picked
    if source == "file" and upload is not None:
        try:
            path = folder.save_upload(upload.name, upload.getvalue())
        except CandleFileError as exc:
            problems["path"] = f"breaks the rule: {exc.safe}"
    if source == "file" and not path and "path" not in problems:
        problems["path"] = "breaks the rule: pick or upload a candle file when the bars come from a file"
    start_ms = end_ms = None
    if dates:
        start_ms = utc_ms(dates[0])
        end_ms = utc_ms(dates[-1] + timedelta(days=1))  # the whole last day
    try:
        risk_settings = RiskSettings(**{**vars(risk), **values})
    except ConfigError as exc:
        problems.update(risk_problems(str(exc)))
    for name, rule in problems.items():
        if name in slots:
            slots[name].error(f"**{LABELS[name]}** (`{name}`) {rule}", icon=":material/error:")
        else:
            outcome.error(rule, icon=":material/error:")
    if problems:
        outcome.error("Nothing was started: fix the fields above.")
    else:
        request = BacktestRequest(
            symbols=tuple(symbols),
            source=source,
            path=path or None,
            bars=int(bars) or None,
            start_ms=start_ms,
            end_ms=end_ms,
            model=model,
            confirm_models=tuple(m for m in confirm if m != model),
            models_from=MODELS_FROM[models_from_label],
            train_fraction=train_pct / 100.0,
            risk=risk_settings,
            exchange=config.exchange,
            engine=ENGINES[engine_label],
        )
        job = runtime.backtest(request)
        if job.request is not request:
            outcome.warning("A backtest is already running; its result shows below when it is done.")
        st.session_state["backtest_job"] = job
        st.session_state["backtest_started"] = time.time()


# --------------------------------------------------------------------------- the job


def chart_bars(request: BacktestRequest, result: Any, started: float) -> dict[str, pd.DataFrame]:
    """The tested bars of each symbol for the price charts (at most ``MAX_CANDLES`` candles each)."""
    from pipeline.jobs.training import SIMULATOR_BARS, load_bars
    from pipeline.ml import data

    interval = int(result.settings.get("interval_ms") or 60_000)
    out: dict[str, pd.DataFrame] = {}
    for symbol, (first, last) in result.settings.get("period", {}).items():
        if request.source == "simulator":
            # the simulator's bars end "now": end them where the job's ended, so times line up
            end = last + interval if request.end_ms is None else int(started * 1000)
            frame = data.bars_from_simulator(
                symbol, request.bars or SIMULATOR_BARS, seed=config.simulator_seed or 0, end_ms=end
            )
        else:
            frame, _ = load_bars(
                config,
                runtime.db,
                symbol,
                request.source,
                bars=request.bars,
                path=request.path,
                any_path=request.any_path,
            )
        frame = frame[(frame["start"] >= first) & (frame["start"] <= last)]
        step = -(-len(frame) // MAX_CANDLES) if len(frame) > MAX_CANDLES else 1
        if step > 1:  # merge bars so a chart never draws more than MAX_CANDLES candles
            group = frame["start"].sub(first) // (interval * step)
            frame = frame.groupby(group).agg(
                start=("start", "first"),
                open=("open", "first"),
                high=("high", "max"),
                low=("low", "min"),
                close=("close", "last"),
            )
        out[symbol] = frame.assign(time=pd.to_datetime(frame["start"], unit="ms", utc=True)).reset_index(drop=True)
    return out


finished: BacktestJob | None = st.session_state.get("backtest_job")
if finished is not None and not finished.running and st.session_state.get("backtest_collected") is not finished:
    state = finished.snapshot()
    st.session_state["backtest_collected"] = finished
    st.session_state["backtest_error"] = state.error
    if state.result is not None:
        try:
            prices = chart_bars(finished.request, state.result, st.session_state.get("backtest_started", time.time()))
        except PipelineError as exc:
            prices = {}
            st.session_state["backtest_error"] = f"The price charts could not load the bars: {exc}"
        st.session_state["backtest_last"] = {
            "request": finished.request,
            "result": state.result,
            "prices": prices,
            "message": state.message,
        }


@st.fragment(run_every="1s")
def progress() -> None:
    job = st.session_state.get("backtest_job")
    if job is None:
        return
    state = job.snapshot()
    if state.running:
        st.progress(state.progress, text=f"Backtesting: {state.message}")
    elif st.session_state.get("backtest_collected") is not job:
        st.rerun()  # done: the whole page shows the result


progress()
if st.session_state.get("backtest_error"):
    st.error(f"The backtest failed: {st.session_state['backtest_error']}")

last = st.session_state.get("backtest_last")
if last is None:
    st.info("No backtest yet. Pick symbols and settings above and run one; on simulator history it takes seconds.")
    st.stop()


# --------------------------------------------------------------------------- the result

shown: BacktestRequest = last["request"]
result = last["result"]
m, hold = result.metrics, result.buy_and_hold
notes = result.settings.get("models", {})
tested = result.settings.get("period", {})
st.subheader("Result")
when = [
    f"{s} {pd.to_datetime(a, unit='ms'):%Y-%m-%d %H:%M} – {pd.to_datetime(b, unit='ms'):%Y-%m-%d %H:%M}"
    for s, (a, b) in tested.items()
]
st.caption(
    f"{result.model}"
    + (f" confirmed by {', '.join(shown.confirm_models)}" if shown.confirm_models else "")
    + f" on {'; '.join(when)} (UTC) · models from "
    + (
        "the registry"
        if notes.get("models_from") == "registry"
        else f"the first {shown.train_fraction:.0%} of the bars"
    )
    + f" · {result.settings.get('engine', 'backtrader')} engine · {last['message']}"
)
if notes.get("in_sample"):
    inside = [name for name, note in notes.get("models", {}).items() if note.get("in_sample")]
    st.warning(
        f"**In-sample result, not a test.** The registry's {', '.join(inside)} learned from bars inside the "
        'tested period, so these figures overstate what the strategy would have made. Pick "Train on the '
        'first part of the period" for an out-of-sample backtest.',
        icon=":material/warning:",
    )


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


top = st.columns(6)
top[0].metric(
    "Return",
    fmt(m["return_pct"], "+.2f") + " %",
    delta=f"{m['return_pct'] - hold['return_pct']:+.2f} pp vs B&H",
    help=f"Buy-and-hold of the same symbols: {hold['return_pct']:+.2f} %",
)
top[1].metric(
    "Win rate",
    fmt(m["win_rate_pct"], ".1f") + (" %" if m["win_rate_pct"] is not None else ""),
    help=why_none("win_rate_pct", m),
)
top[2].metric("Profit factor", fmt(m["profit_factor"], ".2f"), help=why_none("profit_factor", m))
top[3].metric("Exposure", f"{m['exposure_pct']:.1f} %", help="Share of bars with an open position")
top[4].metric("Trades", f"{m['trades']:,}" + (f" (+{m['open_trades']} open)" if m["open_trades"] else ""))
top[5].metric("Fees paid (USDT)", f"{m['fees_paid']:,.2f}")

ROWS = [
    ("Return %", "return_pct", "+.2f"),
    ("CAGR %", "cagr_pct", "+.2f"),
    ("Sharpe", "sharpe", "+.2f"),
    ("Sortino", "sortino", "+.2f"),
    ("Max drawdown %", "max_drawdown_pct", ".2f"),
]
st.dataframe(
    pd.DataFrame(
        [
            {
                "metric": label,
                "strategy": fmt(m.get(key), spec),
                "buy & hold": fmt(hold.get(key), spec),
                "note": why_none(key, m, hold) or "",
            }
            for label, key, spec in ROWS
        ]
    ),
    hide_index=True,
)
st.caption(
    'CAGR, Sharpe and Sortino are annualized from the bars (a year of 365.25 days); "—" marks a figure the '
    "period cannot give, with the reason beside it."
)

curve = result.equity.assign(time=pd.to_datetime(result.equity["start"], unit="ms", utc=True))
st.plotly_chart(equity_vs_hold(curve, title="Equity vs buy-and-hold"), width="stretch")
st.plotly_chart(drawdown_vs_hold(curve), width="stretch")

trades = pd.DataFrame(
    result.trades,
    columns=[
        "order_id",
        "symbol",
        "entry_time",
        "entry_price",
        "exit_time",
        "exit_price",
        "quantity",
        "fees",
        "pnl",
        "pnl_pct",
        "exit_reason",
        "model",
        "confidence",
    ],
)
for column in ("entry_time", "exit_time"):
    trades[column] = pd.to_datetime(trades[column].astype("Float64"), unit="ms", utc=True)


for symbol, bars in last["prices"].items():
    st.plotly_chart(trades_on_price(symbol, bars, trades), width="stretch")

st.subheader("Trades")
if trades.empty:
    st.caption("No trade: no signal passed the rules (see why below).")
else:
    st.dataframe(
        trades,
        hide_index=True,
        width="stretch",
        column_config={
            "entry_time": st.column_config.DatetimeColumn("entry (UTC)", format="YYYY-MM-DD HH:mm"),
            "exit_time": st.column_config.DatetimeColumn("exit (UTC)", format="YYYY-MM-DD HH:mm"),
            "entry_price": st.column_config.NumberColumn("entry price", format="%.6g"),
            "exit_price": st.column_config.NumberColumn("exit price", format="%.6g"),
            "fees": st.column_config.NumberColumn(format="%.2f"),
            "pnl": st.column_config.NumberColumn("P&L", format="%+.2f"),
            "pnl_pct": st.column_config.NumberColumn("P&L %", format="%+.2f"),
            "confidence": st.column_config.NumberColumn(format="%.2f"),
        },
    )

st.subheader("Why no order")
skipped = sorted(((why, n) for why, n in result.skipped.items() if n), key=lambda kv: -kv[1])
if skipped:
    st.dataframe(pd.DataFrame(skipped, columns=["reason", "signals"]), hide_index=True)
st.caption(f"Timings: {', '.join(f'{k} {v:g} s' for k, v in result.timings.items())}")
