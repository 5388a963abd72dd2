"""Import: drag a CSV export in, see what it holds and what is wrong with it, then import it.

The file is checked in full before anything is published (a dry run with a progress bar), so the
report of bad rows comes first; the import then publishes the good rows to ``raw-trades`` and
says how many were new, already in the journal, or rejected. Files in no known format get a
column mapping that can be saved for next time.

The counters say what they count: an exchange export's rows are fills (executions), which the
journal pairs FIFO into round trips; a trade file's rows are whole trades. After the import the
page follows the published rows into the journal (``storage.journal.ImportTracker``) every 2 s:
fills in the ledger, then the round trips they closed, as the journal's stages store them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from pipeline.errors import PipelineError
from pipeline.journal.formats import (
    FILL_FIELDS,
    FILL_REQUIRED,
    LABELS,
    TRADE_FIELDS,
    TRADE_REQUIRED,
    zone_of,
)
from pipeline.journal.import_mappings import find_mapping, save_mapping
from pipeline.journal.import_preview import preview_times
from pipeline.journal.importer import (
    MAX_UPLOAD_BYTES,
    ImportFileError,
    ImportReport,
    check_file,
    import_file,
    preview,
)
from runtime import page_runtime
from storage.journal import ImportTracker

TARGETS = {"fill": FILL_FIELDS, "trade": TRADE_FIELDS}
REQUIRED = {"fill": FILL_REQUIRED, "trade": TRADE_REQUIRED}
STALLED_S = 60.0  # no row arrived for this long: say where to look


def _units(report: ImportReport, n: int, adjective: str = "") -> str:
    """``n`` rows of the report's kind, e.g. "800 new fills", "1 trade"."""
    return f"{n:,} {adjective}{report.unit or 'row'}{'s' * (n != 1)}"


runtime = page_runtime()
user = runtime.config.user_id
st.title("Import")
st.caption(
    f"{len(LABELS) - 3} exchange, broker and journal exports (Binance, Bybit, Kraken, Coinbase, OKX, KuCoin, "
    "MEXC, Bitfinex, IBKR, Schwab, Fidelity, thinkorswim, Webull, TradeNote, Tradervue...), as CSV or Excel, "
    "the generic template (the Trade record's columns), or any CSV with a column mapping. Importing the same "
    "file twice adds nothing twice."
)

zone_name = st.text_input(
    "Time zone of files whose times are local",
    value=runtime.config.import_timezone,
    help="An IANA name like America/New_York, or UTC+02:00. Files that say UTC, or name a zone in a "
    "column header, keep their own.",
)
try:
    zone = zone_of(zone_name)
except ValueError as exc:
    st.error(str(exc))
    st.stop()
options = {"timezone": zone_name, "currency": runtime.config.account_currency}

upload = st.file_uploader(
    "Drop an export here", type=["csv", "txt", "xlsx", "xls"], max_upload_size=MAX_UPLOAD_BYTES // 2**20
)
if upload is None:
    st.info("Nothing to import yet. Export your trade history from the exchange as CSV and drop it above.")
    st.stop()

data = upload.getvalue()
digest = hashlib.sha256(data).hexdigest()[:16]
mapping: dict[str, str] | None = st.session_state.get(f"mapping:{digest}")


def _report_table(report: ImportReport) -> None:
    if report.rejected:
        st.dataframe(
            pd.DataFrame([vars(r) for r in report.rejected]),
            hide_index=True,
            width="stretch",
            column_config={"row": st.column_config.NumberColumn("line", format="%d")},
        )


def _progress_of(bar: Any, doing: str) -> Callable[[int, int], None]:
    """A progress callback for ``bar``: bytes read of the file's total."""

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{doing} {done / 2**20:.1f} MB")

    return progress


def _mapping_form(header: list[str], guess: dict[str, str]) -> None:
    st.warning(
        "This file's columns match no known export. Map them once (the best guess is filled in: check it); "
        "the mapping is saved for next time."
    )
    kind = st.radio(
        "Each row is",
        ["fill", "trade"],
        horizontal=True,
        format_func=lambda k: "one fill (execution)" if k == "fill" else "one whole trade (entry and exit)",
    )
    with st.form("mapping"):
        choices = ["—", *header]
        picked = {}
        cols = st.columns(3)
        for i, target in enumerate(TARGETS[kind]):
            label = target + (" *" if target in REQUIRED[kind] else "")
            guessed = guess.get(target)
            index = choices.index(guessed) if guessed in choices else 0
            picked[target] = cols[i % 3].selectbox(label, choices, index=index, key=f"map:{target}")
        time_format = st.text_input(
            "Time format (optional, strftime, e.g. %d/%m/%Y %H:%M)", value=guess.get("time_format", "")
        )
        file_name = upload.name if upload is not None else "mapping"
        name = st.text_input("Save this mapping as", value=file_name.rsplit(".", 1)[0][:40])
        if st.form_submit_button("Use this mapping", type="primary"):
            missing = [t for t in REQUIRED[kind] if picked[t] == "—"]
            if missing:
                st.error(f"Pick a column for: {', '.join(missing)}")
                return
            chosen = {t: c for t, c in picked.items() if c != "—"} | {"kind": kind}
            if time_format.strip():
                chosen["time_format"] = time_format.strip()
            if zone_name.strip() and zone_name.strip().upper() != "UTC":
                chosen["timezone"] = zone_name.strip()
            save_mapping(runtime.db, name.strip() or digest, header, chosen)
            st.session_state[f"mapping:{digest}"] = chosen
            st.rerun()


st.subheader("Preview")
try:
    header, first_rows = preview(data)
    st.dataframe(pd.DataFrame(first_rows, columns=header), hide_index=True, width="stretch", height=240)
    times = preview_times(data, options)
    if times:
        st.caption(f"The first rows' times as they will be stored (UTC), and in {zone_name}:")

        def _at(ms: int | None, tz: object) -> str:
            return "" if ms is None else datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S %Z")  # type: ignore[arg-type]

        st.dataframe(
            pd.DataFrame(
                [
                    {"file line": line, "UTC": _at(ms, UTC), zone_name: _at(ms, zone), "problem": problem}
                    for line, ms, problem in times
                ]
            ),
            hide_index=True,
            width="stretch",
        )
except ImportFileError:
    st.caption("No preview: the file is not readable as a table (see below).")

check_key = f"check:{digest}:{mapping}:{options}"
if check_key not in st.session_state:
    bar = st.progress(0.0, text="Checking every row…")
    try:
        report = check_file(
            data,
            user_id=user,
            db=runtime.db,
            mapping=mapping,
            options=options,
            progress=_progress_of(bar, "Checking…"),
        )
    except ImportFileError as exc:
        bar.empty()
        if exc.needs_mapping and exc.header:
            saved = find_mapping(runtime.db, exc.header)
            if saved is not None:
                st.session_state[f"mapping:{digest}"] = saved["mapping"]
                st.rerun()
            _mapping_form(exc.header, exc.guess)
        elif exc.kind:
            st.error(f"{upload.name}: {exc}")
        else:
            st.error(f"{upload.name}: {exc}")
        st.stop()
    bar.empty()
    st.session_state[check_key] = report
checked: ImportReport = st.session_state[check_key]

st.subheader("Before import")
for warning in checked.warnings:
    st.warning(warning)
a, b, c, d = st.columns(4)
a.metric("Format", checked.format)
b.metric(f"New {checked.unit or 'row'}s", f"{checked.accepted:,}")
c.metric("Already in the journal", f"{checked.duplicates:,}")
d.metric("Rejected rows", f"{checked.rows - checked.accepted - checked.duplicates:,}")
if checked.format in LABELS:
    st.caption(f"Read as: {LABELS[checked.format]}.")
if checked.unit == "fill":
    st.caption(
        "Each row is a fill (one execution). The journal pairs a symbol's buys and sells first in, first "
        "out: each match is a round trip, and what no fill closed stays an open lot."
    )
_report_table(checked)

done_key = f"done:{digest}:{mapping}:{options}"
if st.button(
    f"Import {_units(checked, checked.accepted)}",
    type="primary",
    disabled=checked.accepted == 0 or done_key in st.session_state,
):
    bar = st.progress(0.0, text="Importing…")
    try:
        result = import_file(
            data,
            user_id=user,
            producer=runtime.producer,
            db=runtime.db,
            mapping=mapping,
            options=options,
            keep_ids=True,
            progress=_progress_of(bar, "Importing…"),
        )
    except PipelineError as exc:
        bar.empty()
        st.error(f"The import stopped: {exc}. Nothing is lost: import the file again; rows already in are skipped.")
        st.stop()
    bar.progress(1.0, text="Imported")
    st.session_state[done_key] = result
    st.session_state[f"track:{done_key}"] = ImportTracker(result.published_ids)
    st.session_state.pop(check_key, None)


def _journal_counters(tracker: ImportTracker) -> None:
    tracker.refresh(runtime.db)
    if tracker.fills:
        a, b, c = st.columns(3)
        a.metric("Fills published", f"{tracker.fills:,}")
        b.metric("Fills in the ledger", f"{tracker.fills_in_ledger:,}")
        c.metric(
            "Round trips in the journal", "…" if tracker.round_trips is None else f"{tracker.round_trips_in_journal:,}"
        )
    if tracker.trades:
        a, b, _ = st.columns(3)
        a.metric("Trades published", f"{tracker.trades:,}")
        b.metric("Trades in the journal", f"{tracker.trades_in_journal:,}")
    if tracker.caught_up:
        trips = tracker.round_trips or 0
        closed = f": its fills closed {trips:,} round trip{'s' * (trips != 1)}" if tracker.fills else ""
        st.caption(f"Everything this import published is in the journal{closed}.")
    elif time.monotonic() - tracker.progress_at > STALLED_S:
        st.warning(
            f"Nothing more has reached the journal for {STALLED_S:.0f} s: are the journal's stages running? "
            "Rows they reject are on the Pipeline page's dead letters."
        )
    else:
        st.caption("The journal's stages are storing them; this refreshes every 2 s.")


if done_key in st.session_state:
    imported: ImportReport = st.session_state[done_key]
    st.subheader("After import")
    st.success(
        f"Published {_units(imported, imported.accepted, 'new ')} from {imported.rows:,} rows "
        f"({imported.duplicates:,} already in the journal, "
        f"{imported.rows - imported.accepted - imported.duplicates:,} rejected)."
    )
    tracker: ImportTracker | None = st.session_state.get(f"track:{done_key}")
    if tracker is not None:
        st.fragment(run_every="2s")(_journal_counters)(tracker)
    _report_table(imported)
    st.markdown("See them on the **Journal** page.")
