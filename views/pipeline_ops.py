"""The Pipeline page's operating parts: metrics and the health check's round trip, browse any
topic, dead letters with edit-and-redrive, consumer groups' lag and offset reset, produce by hand,
and each topic's JSON Schema.

Each part is a tab rendered by ``operate()`` below the page's live view (outside its fragment, so a
form is not redrawn under the operator's hands). Everything goes through ``pipeline.operations``:
the browser reads with ``Bus.read`` (no consumer group, so it never moves a committed offset), a
redrive is idempotent by source coordinates and rate-limited (``REDRIVE_RATE``), and a reset is
refused while the group has members, in one line. Cost: a tab's reads happen when its button is
pressed; the lag chart reads on every run (the group's offsets, from the bus's describe, and its
stored lag samples, ``views.pipeline_lag``), and the
metrics tab every 5 s (the status rows, and one health-check message through the bus).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
import streamlit as st

from pipeline.errors import BadMessageError, PipelineError
from pipeline.messages import MODELS, decode, encode, json_schemas
from pipeline.operations import browse, offsets, redrive
from pipeline.operations.browse import Filters
from pipeline.operations.health_check import round_trip
from runtime import page_runtime
from storage import redrive as redrive_log
from storage import status
from views import pipeline_clients, pipeline_lag

PAGE_SIZE = 20
LETTERS_SHOWN = 200
LAG_POINTS = 300


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def operate() -> None:
    """Render the operating tabs."""
    tabs = st.tabs(["Metrics", "Browse", "Dead letters", "Consumer groups", "Produce", "Schemas"])
    with tabs[0]:
        metrics()
    with tabs[1]:
        browser()
    with tabs[2]:
        dead_letters()
    with tabs[3]:
        consumer_groups()
    with tabs[4]:
        produce()
    with tabs[5]:
        schemas()


# --- Metrics -----------------------------------------------------------------------------------


def quantile(hist: dict[str, Any], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of a cumulative histogram (None: empty;
    inf: above the last bound), as Prometheus's ``histogram_quantile`` bounds it."""
    counts: list[int] = hist.get("counts", [])
    if not counts or counts[-1] == 0:
        return None
    rank = q * counts[-1]
    for bound, n in zip([*hist["le"], float("inf")], counts, strict=False):
        if n >= rank:
            return float(bound)
    return float("inf")


@st.fragment(run_every="5s")
def metrics() -> None:
    """What /metrics exports, charted: each stage's rates and batch latency, and the health check."""
    runtime = page_runtime()
    trip = round_trip(runtime.bus, runtime.producer)
    left, right = st.columns([1, 3])
    if trip.ok and trip.latency_ms is not None:
        left.metric("Health-check round trip", f"{trip.latency_ms:.1f} ms")
    else:
        left.metric("Health-check round trip", "failed")
        left.error(trip.error or "no answer")
    rows = status.stages(runtime.db)
    now = time.time()
    history: list[dict[str, Any]] = st.session_state.setdefault("metric_history", [])
    previous: dict[str, tuple[float, int, int, int]] = st.session_state.get("metric_previous", {})
    current = {s.name: (now, s.processed, s.dead_lettered, s.retried) for s in rows}
    for name, (at, processed, dead, retried) in current.items():
        if name in previous and at > previous[name][0]:
            dt = at - previous[name][0]
            stamp = pd.Timestamp(at, unit="s", tz="UTC")
            for what, value, before in (
                ("processed/s", processed, previous[name][1]),
                ("dead-lettered/s", dead, previous[name][2]),
                ("retried/s", retried, previous[name][3]),
            ):
                history.append({"time": stamp, "series": f"{name} {what}", "rate": max(value - before, 0) / dt})
    st.session_state["metric_previous"] = current
    del history[: max(len(history) - 20 * LAG_POINTS, 0)]
    with right:
        if history:
            st.line_chart(pd.DataFrame(history), x="time", y="rate", color="series", height=240)
        else:
            st.caption("Rates appear from the second sample (every 5 s).")
    table = []
    for s in rows:
        hist = s.metrics.get("batch_latency", {})
        p50, p99 = quantile(hist, 0.5), quantile(hist, 0.99)
        table.append(
            {
                "worker": s.name,
                "processed": s.processed,
                "dead-lettered": s.dead_lettered,
                "retried": s.retried,
                "batches": (hist.get("counts") or [0])[-1],
                "batch p50 ≤ s": p50,
                "batch p99 ≤ s": p99,
            }
        )
    if table:
        st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch", key="metrics_table")
    st.caption("The same numbers as the API's /metrics (and the Grafana dashboard in docker-compose.yml).")
    pipeline_clients.show(rows, now)


# --- Browse -------------------------------------------------------------------------------------


def browser() -> None:
    runtime = page_runtime()
    names = sorted(t.name for t in runtime.topics())
    with st.form("browse_form"):
        left, mid, right = st.columns(3)
        topic = left.selectbox("Topic", names, key="browse_topic")
        partition = mid.text_input("Partition (empty: all)", key="browse_partition")
        start = right.selectbox("Start", ["end", "beginning", "offset", "time"], key="browse_start")
        a, b, c, d = st.columns(4)
        offset = a.number_input("Offset", min_value=0, value=0, step=1, key="browse_offset")
        at = b.text_input("Time (ISO, UTC)", key="browse_time")
        key = c.text_input("Key", key="browse_key")
        grep = d.text_input("Value contains", key="browse_grep")
        e, f, g = st.columns(3)
        path = e.text_input("JSON path", key="browse_path", placeholder="$.symbol")
        equals = f.text_input("equals", key="browse_equals")
        size = g.number_input("Page size", min_value=1, max_value=500, value=PAGE_SIZE, key="browse_size")
        opened = st.form_submit_button("Open page")
    if opened:
        try:
            filters = Filters(key=key or None, grep=grep or None, path=path or None, equals=equals or None)
            time_ms = None
            if start == "time":
                time_ms = offsets.Target.parse(at or "-1h").value
            page = browse.open_page(
                runtime.bus,
                str(topic),
                partition=int(partition) if partition.strip() else None,
                start=start,  # type: ignore[arg-type]
                offset=int(offset),
                time_ms=time_ms,
                size=int(size),
                filters=filters,
            )
            st.session_state["browse_page"] = (page, filters, int(size))
            st.session_state.pop("browse_error", None)
        except (PipelineError, ValueError) as exc:
            st.session_state["browse_error"] = str(exc)
            st.session_state.pop("browse_page", None)
    if "browse_error" in st.session_state:
        st.error(st.session_state["browse_error"])
    shown = st.session_state.get("browse_page")
    if shown is None:
        return
    page, filters, size = shown
    back, forward, note = st.columns([1, 1, 4])
    if back.button("◀ Newer pages before", key="browse_prev", disabled=page.at_start):
        page = browse.turn(runtime.bus, page.topic, page.partitions, page.before, "backward", size, filters)
        st.session_state["browse_page"] = (page, filters, size)
    if forward.button("Next ▶", key="browse_next", disabled=page.at_end):
        page = browse.turn(runtime.bus, page.topic, page.partitions, page.after, "forward", size, filters)
        st.session_state["browse_page"] = (page, filters, size)
    note.caption(
        f"{len(page.records)} messages of {page.topic} · scanned {page.scanned}"
        + (" · stopped at the scan limit" if page.exhausted else "")
    )
    rows = [browse.describe(r) for r in page.records]
    if not rows:
        st.info("No message on this page.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "partition": r["partition"],
                    "offset": r["offset"],
                    "timestamp": _time(r["timestamp"]),
                    "key": r["key"] or "",
                    "headers": orjson.dumps(r["headers"]).decode() if r["headers"] else "",
                    "value": orjson.dumps(r["value"]).decode()[:200],
                }
                for r in rows
            ]
        ),
        hide_index=True,
        width="stretch",
        key="browse_table",
    )
    for r in rows:
        with st.expander(f"{page.topic}[{r['partition']}]@{r['offset']} · {r['key'] or ''}"):
            if r["headers"]:
                st.json(r["headers"])
            st.json(r["value"])


# --- Dead letters -------------------------------------------------------------------------------


def dead_letters() -> None:
    runtime = page_runtime()
    dlqs = sorted(t.name for t in runtime.topics() if t.name.endswith("_dlq") and t.messages)
    if not dlqs:
        st.caption("No dead letters to redrive (the page says so above too).")
        return
    dlq = str(st.selectbox("Dead-letter topic", dlqs, key="dlq_topic"))
    items = list(redrive.letters(runtime.bus, dlq, limit=LETTERS_SHOWN))
    done = redrive_log.lookup(runtime.db, [i.coordinates for i in items])
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "at": f"{i.record.partition}@{i.record.offset}",
                    "stage": i.letter.stage,
                    "reason": i.letter.reason,
                    "violations": "; ".join(
                        f"{v.get('field')}={v.get('value')!r}: {v.get('rule')}" for v in i.letter.violations
                    ),
                    "source": f"{i.letter.source_topic}[{i.letter.source_partition}]@{i.letter.source_offset}",
                    "retries": i.letter.retry_count,
                    "redriven": done[i.coordinates].state if i.coordinates in done else "",
                }
                for i in items
            ]
        ),
        hide_index=True,
        width="stretch",
        key="dlq_table",
    )
    if len(items) == LETTERS_SHOWN:
        st.caption(f"The first {LETTERS_SHOWN}; redrive a selection below to take them all.")
    _edit_and_redrive(dlq, items)
    _redrive_selection(dlq)


def _edit_and_redrive(dlq: str, items: list[redrive.Letter]) -> None:
    runtime = page_runtime()
    st.markdown("**Edit and redrive one**")
    by_place = {f"{i.record.partition}@{i.record.offset}": i for i in items}
    place = st.selectbox("Dead letter", list(by_place), key="dlq_pick")
    if place is None:
        return
    item = by_place[str(place)]
    with st.form(f"dlq_edit_{dlq}_{place}"):
        value = st.text_area("Message", item.letter.value, height=160, key=f"dlq_value_{dlq}_{place}")
        sent = st.form_submit_button("Redrive this message")
    if sent:
        try:
            report = redrive.redrive_one(runtime.db, runtime.producer, item, value, rate=runtime.config.redrive_rate)
        except BadMessageError as exc:
            st.error(f"Not published: {exc}")
            return
        _show(report)


def _redrive_selection(dlq: str) -> None:
    runtime = page_runtime()
    st.markdown("**Redrive a selection**")
    with st.form(f"dlq_bulk_{dlq}"):
        left, right = st.columns(2)
        conditions = left.text_input("Filter (FIELD=VALUE or FIELD~TEXT, comma-separated)", key="dlq_filter")
        grep = right.text_input("Message contains", key="dlq_grep")
        dry = st.checkbox("Dry run", value=True, key="dlq_dry")
        go = st.form_submit_button("Redrive selection")
    if not go:
        return
    try:
        which = redrive.LetterFilter(
            conditions=redrive.LetterFilter.parse([c for c in conditions.split(",") if c.strip()]),
            filters=Filters(grep=grep or None),
        )
        report = redrive.redrive(
            runtime.db,
            runtime.producer,
            redrive.letters(runtime.bus, dlq, which),
            rate=runtime.config.redrive_rate,
            dry_run=dry,
        )
    except PipelineError as exc:
        st.error(str(exc))
        return
    _show(report)


def _show(report: redrive.Report) -> None:
    verb = "would publish" if report.dry_run else "published"
    line = f"{verb} {report.published} · skipped {report.skipped} · failed {report.failed}"
    (st.warning if report.failed else st.success)(f"Redrive: {line}")
    for reason, n in sorted(report.reasons.items()):
        st.caption(f"{n} × {reason}")
    for error in report.errors:
        st.error(error)


# --- Consumer groups ----------------------------------------------------------------------------


def consumer_groups() -> None:
    runtime = page_runtime()
    groups = {g.group_id: g for g in runtime.groups()}
    if not groups:
        st.info("No consumer group has committed yet.")
        return
    group_id = str(st.selectbox("Group", sorted(groups), key="offsets_group"))
    state = groups[group_id]
    pipeline_lag.lag_chart(runtime.db, group_id)
    st.caption(
        f"{state.members} active member{'s' * (state.members != 1)} · lag {state.lag}"
        " · the chart reads the samples the lag-history worker stores (every 5 s, a day kept)"
    )
    with st.form("offsets_form"):
        a, b, c = st.columns(3)
        target = a.text_input("Reset to (earliest, latest, an offset, an ISO time, -15m)", "earliest", key="reset_to")
        topics = sorted({p.topic for p in state.partitions})
        topic = b.selectbox("Topic", ["(every topic committed)", *topics], key="reset_topic")
        partition = c.text_input("Partition (empty: all)", key="reset_partition")
        dry = st.checkbox("Dry run", value=True, key="reset_dry")
        go = st.form_submit_button("Reset offsets")
    if state.members:
        st.info(offsets.members_line(group_id, state.members))
    if not go:
        return
    try:
        plan = offsets.plan(
            runtime.bus,
            group_id,
            offsets.Target.parse(target),
            topic=None if str(topic).startswith("(") else str(topic),
            partition=int(partition) if partition.strip() else None,
        )
        if not dry:
            offsets.apply(runtime.bus, plan)
    except (PipelineError, ValueError) as exc:
        st.error(str(exc))
        return
    (st.info if dry else st.success)(
        f"{'Would reset' if dry else 'Reset'} {group_id} to {plan.target} on {len(plan.moves)} partitions."
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "topic": m.topic,
                    "partition": m.partition,
                    "committed": m.current,
                    "new": m.new,
                    "lag after": m.lag_after,
                }
                for m in plan.moves
            ]
        ),
        hide_index=True,
        key="reset_table",
    )


# --- Produce by hand ----------------------------------------------------------------------------


def produce() -> None:
    runtime = page_runtime()
    topic = str(st.selectbox("Topic", sorted(MODELS), key="produce_topic"))
    with st.form("produce_form"):
        key = st.text_input("Key (optional)", key="produce_key")
        value = st.text_area("Message (JSON)", "{}", height=200, key="produce_value")
        sent = st.form_submit_button("Validate and publish")
    if not sent:
        return
    try:
        message = decode(topic, value, MODELS[topic])
    except BadMessageError as exc:
        st.error(f"Not published: {exc}")
        for v in exc.violations:
            st.caption(f"{v.field}: {v.value!r} · {v.rule}")
        return
    producer = runtime.producer
    producer.produce(topic, encode(message), key=key.encode() if key else None)
    if producer.flush(10.0):
        st.error("The message was not delivered to the bus.")
        return
    st.success(f"Published to {topic} at {time.strftime('%H:%M:%S')}.")


# --- Schemas ------------------------------------------------------------------------------------


def schemas() -> None:
    every = json_schemas()
    topic = str(st.selectbox("Topic", sorted(every), key="schema_topic"))
    st.json(every[topic])
