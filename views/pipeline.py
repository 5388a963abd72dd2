"""Pipeline: stages and their health, topics and offsets, consumer groups and lag, dead letters."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from runtime import page_runtime
from storage import status

runtime = page_runtime()
st.title("Pipeline")
st.caption(f"{runtime.bus.name} bus · up {int(time.time() - runtime.started_at)} s at first render")


@st.fragment(run_every="2s")
def live() -> None:
    now = time.time()
    health = status.stages(runtime.db)
    previous = st.session_state.get("pipeline_prev")
    st.session_state["pipeline_prev"] = (now, {h.name: h.processed + h.produced for h in health})
    rates = {}
    if previous:
        dt = max(now - previous[0], 1e-6)
        rates = {h.name: (h.processed + h.produced - previous[1].get(h.name, 0)) / dt for h in health}

    st.subheader("Stages")
    st.dataframe(pd.DataFrame([{
        "stage": h.name, "kind": h.kind, "running": h.running, "processed": h.processed,
        "produced": h.produced, "msgs/s": round(rates.get(h.name, 0.0), 1), "lag": h.lag,
        "dead letters": h.dead_lettered, "errors": h.errors, "last error": h.last_error or "",
        "process": f"{h.host}:{h.pid}",
    } for h in health]), hide_index=True, width="stretch")

    topics = runtime.topics()
    groups = runtime.groups()
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Topics")
        frame = pd.DataFrame([{
            "topic": t.name, "partitions": len(t.partitions), "messages": t.messages,
            "end offset": t.end_offset, "cleanup": t.config.get("cleanup.policy", ""),
            "retention h": (int(t.config["retention.ms"]) / 3_600_000
                            if t.config.get("retention.ms", "-1") not in ("-1", "") else None),
        } for t in topics if not t.name.endswith("_dlq")])
        st.dataframe(frame, hide_index=True, width="stretch")
    with right:
        st.subheader("Consumer groups")
        rows = [{"group": g.group_id, "members": g.members, "topic": p.topic, "partition": p.partition,
                 "committed": p.committed, "end offset": p.end_offset, "lag": p.lag}
                for g in groups for p in g.partitions]
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        else:
            st.info("No consumer group has committed yet.")

    rejected = [{"source": h.name, "rule broken": rule, "count": n} for h in health
                for rule, n in sorted(h.details.get("rejections", {}).items(), key=lambda x: -x[1])]
    reconnects = [f"{h.name}: {h.details['reconnects']} reconnects, {h.details.get('gaps', 0)} gaps" for h in health
                  if "reconnects" in h.details]
    if rejected or reconnects:
        st.subheader("Market feed")
        for line in reconnects:
            st.caption(line)
        if rejected:
            st.dataframe(pd.DataFrame(rejected), hide_index=True, width="stretch")

    st.subheader("Dead letters")
    dead = [(t.name, t.messages) for t in topics if t.name.endswith("_dlq") and t.messages]
    if dead:
        st.dataframe(pd.DataFrame(dead, columns=["topic", "messages"]), hide_index=True)
    else:
        st.success("No rejected messages.")


live()
