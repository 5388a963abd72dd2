"""The Pipeline page's consumer-group lag over time: per partition, from the stored samples of the
``lag-history`` worker (``storage.lag_history``), so the chart has the last hour (every sample) or
day (one a minute) whenever the page is opened, not only what this session saw.

Cost: one indexed read of the group's samples in the window (at most 720 + 1,440 per partition).
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from storage import lag_history
from storage.db import Database

WINDOWS_S = {"last hour": 3600.0, "last day": 86_400.0}


def lag_frame(db: Database, group_id: str, window_s: float, now: float) -> pd.DataFrame:
    """The group's samples in the window, one column per series: time, partition (``topic[p]``), lag."""
    samples = lag_history.history(db, group_id, since=now - window_s, now=now)
    return pd.DataFrame(
        {
            "time": pd.to_datetime([s.at for s in samples], unit="s", utc=True),
            "partition": [f"{s.topic}[{s.partition}]" for s in samples],
            "lag": [s.lag for s in samples],
        }
    )


def lag_chart(db: Database, group_id: str) -> None:
    """Chart the group's lag per partition over the chosen window."""
    window = str(st.radio("Lag over", list(WINDOWS_S), horizontal=True, key="lag_window"))
    frame = lag_frame(db, group_id, WINDOWS_S[window], time.time())
    if frame.empty:
        st.caption("No lag sample of this group yet: the lag-history worker stores one every 5 s.")
        return
    st.line_chart(frame, x="time", y="lag", color="partition", height=220)
