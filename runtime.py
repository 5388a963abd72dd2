"""The app's one pipeline per server process, created on the first page view."""

from __future__ import annotations

import atexit
import contextlib
import os
from pathlib import Path

import streamlit as st
from dotenv import dotenv_values

from pipeline.config import load_config
from pipeline.env_file import merge_env
from pipeline.errors import PipelineError
from pipeline.wiring import Runtime, build_runtime

ENV_FILE = Path(".env")


def settings_env() -> dict[str, str]:
    """The settings the app starts with: the environment over ``.env``."""
    return {**{k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}, **os.environ}


@st.cache_resource(show_spinner="Starting the pipeline…")
def get_runtime() -> Runtime:
    """Load the configuration (environment over ``.env``), start the pipeline, stop it at exit."""
    runtime = build_runtime(load_config(settings_env()))
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


def save_settings(changes: dict[str, str]) -> list[str]:
    """Check ``changes`` as a whole configuration, then write them into ``.env`` (keeping its other
    lines; a value with a line break, ``$`` or quotes is refused, see ``pipeline.env_file``). Raise
    ``ConfigError`` for a bad value; return the names the environment overrides (those changes take
    effect only once the environment no longer sets them)."""
    text = merge_env(ENV_FILE.read_text() if ENV_FILE.exists() else "", changes)  # refuses line breaks
    load_config({**settings_env(), **changes})
    ENV_FILE.write_text(text)
    return [k for k in changes if k in os.environ and os.environ[k] != changes[k]]


def restart_runtime() -> None:
    """Stop the running pipeline; the next page view starts one with the saved settings."""
    with contextlib.suppress(PipelineError):  # a runtime that never started has nothing to stop
        get_runtime().stop()
    get_runtime.clear()
