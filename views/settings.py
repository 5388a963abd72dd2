"""Settings: the configuration the pipeline runs with (secrets hidden) and how to change it."""

from __future__ import annotations

import streamlit as st

from pipeline.topics import CATALOG
from runtime import page_runtime

runtime = page_runtime()
st.title("Settings")
st.write("The pipeline reads its settings once at start, from the environment and `.env` "
         "(see `.env.example`). Change them there and restart the app.")
api = next((h for h in runtime.health() if h.name == "api"), None)
if api is not None:
    address = f"http://{runtime.config.api_host}:{runtime.config.api_port}"
    if api.running:
        st.success(f"Trades API: {address} (interactive docs at {address}/docs)")
    else:
        st.error(f"The trades API is not running: {api.last_error or 'stopped'}")
st.json(runtime.config.redacted())
st.subheader("Topic catalog")
st.dataframe([{"topic": s.name, "partitions": s.partitions, "cleanup": s.cleanup,
               "retention h": s.retention_ms / 3_600_000 if s.retention_ms else None,
               "compression": s.compression, "description": s.description}
              for s in CATALOG.values()], hide_index=True, width="stretch")
