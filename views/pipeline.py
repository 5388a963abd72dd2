"""Pipeline: stages and their health, topics and offsets, consumer groups and lag, dead letters;
below them the operating tabs (``views/pipeline_ops.py``): browse, redrive, reset, produce, schemas.

Consumer groups with members are the live ones; groups without (left by closed WebSockets, tails,
benchmarks or earlier runs) are listed apart as inactive, with a button that deletes them and their
committed offsets. The groups of the desk's own stages are never offered for deletion: their
offsets are where each stage resumes. The bus refuses a group that has members again by then.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from pipeline.bus.base import GroupState
from pipeline.errors import PipelineError
from pipeline.stage_catalog import CATALOG as STAGE_CATALOG
from runtime import page_runtime
from storage import status
from views.pipeline_ops import operate

SHOW_OUTCOME_S = 30.0
DESK_GROUPS = frozenset(s.name for s in STAGE_CATALOG if s.role == "stage")  # a stage's group is its name

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
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "stage": h.name,
                    "kind": h.kind,
                    "running": h.running,
                    "processed": h.processed,
                    "produced": h.produced,
                    "msgs/s": round(rates.get(h.name, 0.0), 1),
                    "lag": h.lag,
                    "dead letters": h.dead_lettered,
                    "errors": h.errors,
                    "last error": h.last_error or "",
                    "process": f"{h.host}:{h.pid}",
                }
                for h in health
            ]
        ),
        hide_index=True,
        width="stretch",
    )

    topics = runtime.topics()
    groups = runtime.groups()
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Topics")
        frame = pd.DataFrame(
            [
                {
                    "topic": t.name,
                    "partitions": len(t.partitions),
                    "messages": t.messages,
                    "end offset": t.end_offset,
                    "cleanup": t.config.get("cleanup.policy", ""),
                    "retention h": (
                        int(t.config["retention.ms"]) / 3_600_000
                        if t.config.get("retention.ms", "-1") not in ("-1", "")
                        else None
                    ),
                }
                for t in topics
                if not t.name.endswith("_dlq")
            ]
        )
        st.dataframe(frame, hide_index=True, width="stretch")
    live_groups = [g for g in groups if g.members]
    with right:
        st.subheader("Consumer groups")
        rows = [
            {
                "group": g.group_id,
                "members": g.members,
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "end offset": p.end_offset,
                "lag": p.lag,
            }
            for g in live_groups
            for p in g.partitions
        ]
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        else:
            st.info("No live consumer group has committed yet.")
    inactive_groups([g for g in groups if not g.members])

    rejected = [
        {"source": h.name, "rule broken": rule, "count": n}
        for h in health
        for rule, n in sorted(h.details.get("rejections", {}).items(), key=lambda x: -x[1])
    ]
    reconnects = [
        f"{h.name}: {h.details['reconnects']} reconnects, {h.details.get('gaps', 0)} gaps"
        for h in health
        if "reconnects" in h.details
    ]
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


def _delete_groups(group_ids: list[str]) -> None:
    try:
        outcome: dict[str, str | None] | str = runtime.bus.delete_groups(group_ids)
    except PipelineError as exc:
        outcome = f"The groups could not be deleted: {exc}"
    st.session_state["pipeline_deleted"] = (time.time(), outcome)


def inactive_groups(groups: list[GroupState]) -> None:
    """The groups with no consumer in them now, and a button that deletes those not the desk's own."""
    shown = st.session_state.get("pipeline_deleted")
    if shown and time.time() - shown[0] < SHOW_OUTCOME_S:
        outcome = shown[1]
        if isinstance(outcome, str):
            st.error(outcome)
        else:
            deleted = sum(1 for why in outcome.values() if why is None)
            st.success(f"Deleted {deleted} inactive consumer group{'s' * (deleted != 1)}.")
            for group_id, why in outcome.items():
                if why is not None:
                    st.warning(f"{group_id} was not deleted: {why}.")
    if not groups:
        return
    st.subheader("Inactive consumer groups")
    st.caption(
        "No consumer is in these groups now. Deleting a group deletes its committed offsets; the "
        "groups of the desk's own stages are kept, since a stage resumes from its group's offsets."
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "group": g.group_id,
                    "topics": ", ".join(sorted({p.topic for p in g.partitions})),
                    "partitions committed": len(g.partitions),
                    "lag": g.lag,
                    "kept": "a stage of the desk" if g.group_id in DESK_GROUPS else "",
                }
                for g in groups
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    deletable = [g.group_id for g in groups if g.group_id not in DESK_GROUPS]
    st.button(
        f"Delete {len(deletable)} inactive group{'s' * (len(deletable) != 1)}",
        key="delete_inactive",
        on_click=_delete_groups,
        args=(deletable,),
        disabled=not deletable,
    )


live()
st.divider()
st.subheader("Operate")
operate()
