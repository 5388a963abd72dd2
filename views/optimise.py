"""Optimise: the strategy's parameters searched walk-forward (Optuna on the fast engine), with what
says how far to trust the result, and a button that makes the chosen set the paper trader's.

The form builds an ``OptimiseRequest``; ``runtime.optimise`` runs it on its own thread and a
fragment follows its progress. Finished runs are read back from ``storage.optimise``: the one
picked is shown whole (readings, walk-forward equity against buy-and-hold, windows, each study's
trials with Optuna's optimisation history and parameter importances, rebuilt from the stored
trials), and any runs can be compared side by side.
"""

from __future__ import annotations

import re
import time
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pipeline.config import ML_MODEL_NAMES
from pipeline.errors import PipelineError
from pipeline.jobs.optimise import OptimiseRequest
from pipeline.jobs.training import Source
from pipeline.trading.search_space import NO_CONFIRM, OptimiseError, Range, SearchSpace, params_to_env
from pipeline.trading.walk_forward import OBJECTIVES, WalkForward
from runtime import page_runtime, restart_runtime, save_settings
from storage import optimise as runs_door
from views.backtest_charts import equity_vs_hold

SOURCES: dict[str, Source] = {
    "Stored bars": "store",
    "Simulator history": "simulator",
    "Candle file on this machine": "file",
}
RANGES = {
    "buy_pct": "BUY above expected change %",
    "sell_pct": "SELL below expected change %",
    "medium_confidence": "Medium confidence",
    "high_confidence": "High confidence",
    "stop_loss_pct": "Stop-loss %",
    "take_profit_pct": "Take-profit %",
    "trailing_stop_pct": "Trailing stop % (0 = off)",
    "position_pct": "Position % of equity",
    "risk_pct": "Risk per trade %",
}
LABELS = {
    **RANGES,
    "sizing": "Sizing rules to try",
    "confirm": "Confirming models to try",
    "trials": "Trials per window",
    "windows": "Walk-forward windows",
    "in_sample_ratio": "In-sample length (out-of-sample lengths)",
    "objective": "Objective",
    "model": "Trading model",
    "path": "Candle file path",
}
UP, GREY = "#1e88e5", "#9e9e9e"

runtime = page_runtime()
config = runtime.config
st.title("Optimise")
st.caption(
    "The strategy's parameters searched walk-forward: each window's best in-sample set is scored on the "
    "bars after it, which no trial saw, and those out-of-sample stretches chained are the result to trust, "
    "next to buy-and-hold. The models learn from the first part of the bars only."
)
notice = st.session_state.pop("optimise_notice", None)
if notice:
    (st.warning if "wins" in notice else st.success)(notice)


def problems_by_field(message: str) -> dict[str, str]:
    """Split an ``OptimiseError`` (``name: rule; ...``) into the rule per field."""
    out: dict[str, str] = {}
    for part in message.split("; "):
        m = re.match(r"(\w+): (.*)$", part)
        if m and m.group(1) in LABELS:
            out[m.group(1)] = m.group(2)
        else:
            out.setdefault("", part)
    return out


# --------------------------------------------------------------------------- the form

default = SearchSpace()
with st.form("optimise"):
    slots: dict[str, Any] = {}
    left, mid, right = st.columns(3)
    symbol = left.selectbox("Symbol", list(config.symbols))
    source_label = mid.radio(
        "Bars from", list(SOURCES), horizontal=True, index=1 if "simulator" in config.market_sources else 0
    )
    bars = right.number_input("Most recent bars (0 = all / default)", min_value=0, max_value=5_000_000, value=0)
    # a page reads candle files only from the candle folder (pipeline.candle_files): a name there
    path = st.text_input(
        f"{LABELS['path']} in {config.candle_dir} (for 'Candle file'): a Binance kline CSV or timestamp,open,high,...",
        "",
    )
    slots["path"] = st.container()
    left, mid, right = st.columns(3)
    model = left.selectbox(LABELS["model"], ML_MODEL_NAMES, index=ML_MODEL_NAMES.index(config.decision_model))
    confirm = mid.multiselect(
        LABELS["confirm"] + " (each alone, and none)",
        list(ML_MODEL_NAMES),
        default=list(config.decision_confirm_models),
    )
    slots["confirm"] = mid.container()
    train_pct = right.number_input("Models train on the first % of the bars", min_value=5, max_value=90, value=30)
    c = st.columns(4)
    trials = c[0].number_input(LABELS["trials"], min_value=1, max_value=100_000, value=50)
    windows = c[1].number_input(LABELS["windows"], min_value=1, max_value=100, value=4)
    ratio = c[2].number_input(LABELS["in_sample_ratio"], min_value=0.1, max_value=100.0, value=3.0, step=0.5)
    objective = c[3].selectbox(LABELS["objective"], OBJECTIVES, help="sharpe: annualised; return: % over the window")
    for name, col in (("trials", c[0]), ("windows", c[1]), ("in_sample_ratio", c[2])):
        slots[name] = col.container()
    st.markdown("**Search space** (low and high of each; equal ends fix a parameter)")
    values: dict[str, tuple[float, float]] = {}
    names = list(RANGES)
    for row in range(0, len(names), 3):
        cols = st.columns(6)
        for k, name in enumerate(names[row : row + 3]):
            r = getattr(default, name)
            low = cols[2 * k].number_input(f"{RANGES[name]}: low", value=float(r.low), format="%g", key=f"{name}_lo")
            high = cols[2 * k + 1].number_input("high", value=float(r.high), format="%g", key=f"{name}_hi")
            values[name] = (low, high)
            slots[name] = cols[2 * k].container()
    sizing = st.multiselect(LABELS["sizing"], list(default.sizing), default=list(default.sizing))
    slots["sizing"] = st.container()
    submitted = st.form_submit_button("Run optimisation", type="primary")
    outcome = st.container()

if submitted:
    problems: dict[str, str] = {}
    source = SOURCES[source_label]
    if source == "file" and not path.strip():
        problems["path"] = "give the candle file's path when the bars come from a file"
    choices = (NO_CONFIRM, *[m for m in confirm if m != model])
    space = SearchSpace(
        **{name: Range(lo, hi) for name, (lo, hi) in values.items()}, sizing=tuple(sizing), confirm=choices
    )
    walk = WalkForward(trials=int(trials), windows=int(windows), in_sample_ratio=float(ratio), objective=objective)
    for check in (lambda: space.check(ML_MODEL_NAMES), walk.check):
        try:
            check()
        except OptimiseError as exc:
            problems.update(problems_by_field(str(exc)))
    for name, rule in problems.items():
        where = slots.get(name, outcome)
        where.error(f"**{LABELS.get(name, name)}** (`{name}`): {rule}" if name else rule, icon=":material/error:")
    if problems:
        outcome.error("Nothing was started: fix the fields above.")
    else:
        request = OptimiseRequest(
            symbol=symbol,
            source=source,
            path=path.strip() or None,
            bars=int(bars) or None,
            model=model,
            train_fraction=train_pct / 100.0,
            walk=walk,
            space=space,
            risk=config.risk,
            exchange=config.exchange,
        )
        job = runtime.optimise(request)
        if job.request is not request:
            outcome.warning("An optimisation is already running; it shows below when it is done.")
        st.session_state["optimise_job"] = job


@st.fragment(run_every="1s")
def progress() -> None:
    job = st.session_state.get("optimise_job")
    if job is None:
        return
    state = job.snapshot()
    if state.running:
        st.progress(state.progress, text=f"Optimising: {state.message}")
    elif st.session_state.get("optimise_done") is not job:
        st.session_state["optimise_done"] = job
        if state.error:
            st.session_state["optimise_error"] = state.error
        else:
            st.session_state.pop("optimise_error", None)
            st.session_state["optimise_run"] = state.run_id
        st.rerun()


progress()
if st.session_state.get("optimise_error"):
    st.error(f"The optimisation failed: {st.session_state['optimise_error']}")

stored = runs_door.runs(runtime.db)
if not stored:
    st.info("No optimisation yet. Pick a symbol and a search space above; on simulator history a run takes a minute.")
    st.stop()


# --------------------------------------------------------------------------- one run


def run_label(r: dict[str, Any]) -> str:
    s = r["summary"]["settings"]
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["created_at"] / 1000))
    return f"{when} · {r['symbol']} {r['model']} · {s['windows']} windows x {s['trials']} trials · {r['run_id']}"


ids = [r["run_id"] for r in stored]
by_id = {r["run_id"]: r for r in stored}
wanted = st.session_state.get("optimise_run")
picked = st.selectbox(
    "Run", ids, index=ids.index(wanted) if wanted in ids else 0, format_func=lambda i: run_label(by_id[i])
)
run = runs_door.run(runtime.db, picked)
assert run is not None
summary = run["summary"]
m, hold, figures = summary["out_of_sample"], summary["buy_and_hold"], summary["figures"]
if summary["settings"].get("models", {}).get("in_sample"):
    st.warning("**In-sample models.** A registry model learned from the tested bars: these figures overstate.")


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


top = st.columns(5)
top[0].metric(
    "Walk-forward return",
    fmt(m["return_pct"], "+.2f") + " %",
    delta=f"{m['return_pct'] - hold['return_pct']:+.2f} pp vs B&H",
    help=f"Out-of-sample stretches chained; buy-and-hold of the same bars: {hold['return_pct']:+.2f} %",
)
top[1].metric(
    "Out-of-sample Sharpe", fmt(m.get("sharpe"), "+.2f"), help=f"Buy-and-hold: {fmt(hold.get('sharpe'), '+.2f')}"
)
top[2].metric("In-sample vs out-of-sample gap", fmt(figures["gap"]["gap"], "+.2f"), help=figures["gap"]["what"])
top[3].metric("Deflated Sharpe ratio", fmt(figures["dsr"], ".2f"), help="0.95 or more: not explained by the trials")
top[4].metric("Probability of overfitting", fmt(figures["pbo"], ".2f"), help="CSCV; about 0.5 for a search over noise")
for key in ("gap", "dsr", "pbo"):
    st.markdown(f"- {summary['readings'][key]}")

curve = pd.DataFrame(run["curve"]).assign(time=lambda f: pd.to_datetime(f["start"], unit="ms", utc=True))
st.plotly_chart(
    equity_vs_hold(curve, title="Walk-forward equity (out-of-sample) vs buy-and-hold", name="walk-forward", color=UP),
    width="stretch",
)


def span(s: list[int] | None) -> str:
    if not s:
        return "—"
    return f"{pd.to_datetime(s[0], unit='ms'):%Y-%m-%d %H:%M} – {pd.to_datetime(s[1], unit='ms'):%Y-%m-%d %H:%M}"


window_rows = [
    {
        "window": "final" if w["final"] else w["index"] + 1,
        "in-sample (UTC)": span(w["in_sample"]),
        "out-of-sample (UTC)": span(w["out_of_sample"]),
        "in-sample objective": w["in_sample_metrics"]["value"],
        "out-of-sample objective": (w["out_of_sample_metrics"] or {}).get("value"),
        "in-sample return %": w["in_sample_metrics"]["return_pct"],
        "out-of-sample return %": (w["out_of_sample_metrics"] or {}).get("return_pct"),
        "trades (in / out)": f"{w['in_sample_metrics']['trades']} / "
        + str((w["out_of_sample_metrics"] or {}).get("trades", "—")),
        "DSR": w["dsr"],
        "PBO": w["pbo"],
    }
    for w in summary["windows"]
]
st.subheader("Windows")
st.dataframe(pd.DataFrame(window_rows), hide_index=True, width="stretch")

st.subheader("The parameters to trade next")
chosen = summary["chosen"]
env = {**params_to_env(chosen), "DECISION_MODEL": run["model"]}
st.dataframe(
    pd.DataFrame([{"parameter": k, "value": str(v), "setting": f"{env.get(k, '')}"} for k, v in chosen.items()]),
    hide_index=True,
)
st.caption(
    "The winner of the "
    + ("final study on the latest stretch" if summary["settings"]["final"] else "last window")
    + ". Saving writes these into `.env` as "
    + ", ".join(f"`{k}={v}`" for k, v in env.items())
    + " and restarts the pipeline."
)
current = st.session_state.get("optimise_job")
busy = current is not None and current.running
if st.button("Use these parameters for paper trading", disabled=busy, help="Not while an optimisation runs"):
    try:
        overridden = save_settings(env)
    except PipelineError as exc:
        st.error(f"Not saved: {exc}")
    else:
        st.session_state["optimise_notice"] = (
            f"Saved, but the environment sets {', '.join(overridden)}, which wins over `.env`."
            if overridden
            else "Saved to `.env`; the pipeline restarted with these parameters."
        )
        restart_runtime()
        st.rerun()


# --------------------------------------------------------------------------- a study's trials


def study_of(trials: list[dict[str, Any]], space: SearchSpace) -> optuna.Study:
    """An in-memory Optuna study holding the stored trials, for Optuna's own figures."""
    distributions = space.distributions()
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={k: v for k, v in t["params"].items() if k in distributions},
                distributions=distributions,
                value=t["value"],
                user_attrs=t["metrics"],
            )
            for t in trials
        ]
    )
    return study


st.subheader("Trials")
studies = [(w["index"], "final study" if w["final"] else f"window {w['index'] + 1}") for w in summary["windows"]]
window = st.selectbox("Study", [i for i, _ in studies], format_func=lambda i: dict(studies)[i])
study_trials = runs_door.trials(runtime.db, picked, window)
space = SearchSpace.from_json(run["request"]["space"])
table = pd.DataFrame(
    [{"trial": t["number"], "objective": t["value"], **t["metrics"], **t["params"]} for t in study_trials]
).sort_values("objective", ascending=False)
st.dataframe(table, hide_index=True, width="stretch")
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = study_of(study_trials, space)
left, right = st.columns(2)
left.plotly_chart(optuna.visualization.plot_optimization_history(study), width="stretch")
try:
    right.plotly_chart(optuna.visualization.plot_param_importances(study), width="stretch")
except (ValueError, RuntimeError) as exc:  # too few trials, or none that differ
    right.info(f"No parameter importances for this study: {exc}")


# --------------------------------------------------------------------------- side by side

st.subheader("Compare runs")
compared = st.multiselect("Runs", ids, default=ids[:2], format_func=lambda i: run_label(by_id[i]))
if compared:
    rows = {}
    for rid in compared:
        s = by_id[rid]["summary"]
        rows[rid] = {
            "symbol": s["symbol"],
            "model": s["model"],
            "objective": s["settings"]["objective"],
            "windows x trials": f"{s['settings']['windows']} x {s['settings']['trials']}",
            "walk-forward return %": fmt(s["out_of_sample"]["return_pct"], "+.2f"),
            "buy & hold return %": fmt(s["buy_and_hold"]["return_pct"], "+.2f"),
            "out-of-sample Sharpe": fmt(s["out_of_sample"].get("sharpe"), "+.2f"),
            "max drawdown %": fmt(s["out_of_sample"]["max_drawdown_pct"], ".2f"),
            "gap": fmt(s["figures"]["gap"]["gap"], "+.2f"),
            "DSR": fmt(s["figures"]["dsr"], ".2f"),
            "PBO": fmt(s["figures"]["pbo"], ".2f"),
            **{f"chosen {k}": f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in s["chosen"].items()},
        }
    st.dataframe(pd.DataFrame(rows), width="stretch")
    fig = go.Figure()
    for rid in compared:
        other = runs_door.run(runtime.db, rid)
        if other is None:
            continue
        c0 = pd.DataFrame(other["curve"])
        start = float(other["request"]["exchange"]["starting_balance"])
        fig.add_trace(
            go.Scatter(
                x=pd.to_datetime(c0["start"], unit="ms", utc=True),
                y=(c0["equity"] / start - 1.0) * 100.0,
                mode="lines",
                name=rid,
            )
        )
    fig.update_layout(
        title="Walk-forward return (%) of each run", height=320, margin=dict(l=10, r=10, t=40, b=10), yaxis_title="%"
    )
    st.plotly_chart(fig, width="stretch")
