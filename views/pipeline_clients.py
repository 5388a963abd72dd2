"""The Pipeline page's client metrics (seed 003), the numbers ``/metrics`` exports as
``desk_client_*``: per stage its producer's send and error rate and request latency, its
consumer's records consumed rate, fetch latency and lag sum; per stage and topic messages and bytes
out and in.

Reads the stages' status rows only (``storage.status``: ``metrics["client"]``, written by each
worker's process every second), never a stage's clients. Rates are the counters' differences
between two runs of the Metrics tab (every 5 s), kept in the session like the tab's other rates; a
counter that fell (a client made again) gives no rate for that step. Latencies are librdkafka's
(Kafka only: the embedded bus has no broker and shows none). Cost: a pass over the rows already
read, one chart and two small tables.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from storage.status import StageStatus

POINTS = 6000  # chart points kept in the session (about 100 per stage and series at 5 s: 8 min)
RATES = (("sent", "sent/s"), ("send_errors", "send errors/s"), ("consumed", "consumed/s"))


def counters(rows: list[StageStatus]) -> dict[str, dict[str, float]]:
    """Per stage, the client counters the rates are computed from (bytes summed over its topics)."""
    out: dict[str, dict[str, float]] = {}
    for s in rows:
        client = s.metrics.get("client") or {}
        if not client:
            continue
        topics = (client.get("topics") or {}).values()
        out[s.name] = {
            **{key: float(client.get(key) or 0) for key, _ in RATES},
            "bytes out": float(sum(t["out_bytes"] for t in topics)),
            "bytes in": float(sum(t["in_bytes"] for t in topics)),
        }
    return out


def rates(
    previous: dict[str, tuple[float, dict[str, float]]], current: dict[str, dict[str, float]], now: float
) -> list[dict[str, Any]]:
    """Chart points: per stage and counter, its rate since the previous sample (none for a counter
    that fell, a client made again, or for a stage seen for the first time)."""
    names = dict(RATES) | {"bytes out": "bytes out/s", "bytes in": "bytes in/s"}
    stamp = pd.Timestamp(now, unit="s", tz="UTC")
    points = []
    for stage, values in current.items():
        if stage not in previous or now <= previous[stage][0]:
            continue
        at, before = previous[stage]
        for key, value in values.items():
            if key in before and value >= before[key]:
                points.append(
                    {"time": stamp, "series": f"{stage} {names[key]}", "rate": (value - before[key]) / (now - at)}
                )
    return points


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def show(rows: list[StageStatus], now: float) -> None:
    """Chart the stages' client rates and show their figures (inside the Metrics tab's fragment)."""
    current = counters(rows)
    if not current:
        st.caption("No stage has reported its clients' metrics yet.")
        return
    history: list[dict[str, Any]] = st.session_state.setdefault("client_history", [])
    previous: dict[str, tuple[float, dict[str, float]]] = st.session_state.get("client_previous", {})
    history.extend(rates(previous, current, now))
    st.session_state["client_previous"] = {name: (now, values) for name, values in current.items()}
    del history[: max(len(history) - POINTS, 0)]
    if history:
        st.line_chart(pd.DataFrame(history), x="time", y="rate", color="series", height=240)
    else:
        st.caption("Client rates appear from the second sample (every 5 s).")
    stages, topics = [], []
    for s in rows:
        client = s.metrics.get("client") or {}
        if not client:
            continue
        stages.append(
            {
                "stage": s.name,
                "bus": client.get("source"),
                "sent": client.get("sent"),
                "send errors": client.get("send_errors"),
                "request ms": _ms(client.get("request_latency_s")),
                "consumed": client.get("consumed"),
                "fetch ms": _ms(client.get("fetch_latency_s")),
                "lag sum": client.get("lag"),
            }
        )
        for topic, t in sorted((client.get("topics") or {}).items()):
            topics.append(
                {
                    "stage": s.name,
                    "topic": topic,
                    "messages out": t["out_messages"],
                    "bytes out": t["out_bytes"],
                    "messages in": t["in_messages"],
                    "bytes in": t["in_bytes"],
                }
            )
    st.dataframe(pd.DataFrame(stages), hide_index=True, width="stretch", key="client_table")
    columns = ["stage", "topic", "messages out", "bytes out", "messages in", "bytes in"]
    st.dataframe(pd.DataFrame(topics, columns=columns), hide_index=True, width="stretch", key="client_topics_table")
    st.caption(
        "Each stage's own producer and consumer (seed 003; /metrics has them as desk_client_*). On Kafka from"
        " librdkafka's statistics; request and fetch latency are Kafka's broker round trips, none on the embedded bus."
    )
