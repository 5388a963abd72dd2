"""The app's one pipeline per server process, created on the first page view."""

from __future__ import annotations

import atexit
import os

import streamlit as st
from dotenv import dotenv_values

from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.wiring import KNOWN_STAGES, Runtime, build_runtime


@st.cache_resource(show_spinner="Starting the pipeline…")
def get_runtime() -> Runtime:
    """Load the configuration (environment over ``.env``), start the pipeline, stop it at exit."""
    env = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}
    runtime = build_runtime(load_config(env, KNOWN_STAGES))
    atexit.register(runtime.stop)
    return runtime


def page_runtime() -> Runtime:
    """Return the runtime for a page, or show why it could not start (one line) and stop the page."""
    try:
        return get_runtime()
    except PipelineError as exc:
        st.error(f"The pipeline could not start: {exc}")
        st.stop()
        raise  # st.stop() raises; this line only satisfies type checkers
