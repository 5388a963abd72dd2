"""Settings: the configuration the pipeline runs with (secrets hidden) and how to change it."""

from __future__ import annotations

import streamlit as st

from pipeline.topics import CATALOG
from runtime import page_runtime

runtime = page_runtime()
st.title("Settings")
st.write("The pipeline reads its settings once at start, from the environment and `.env` "
         "(see `.env.example`). Change them there and restart the app.")
st.json(runtime.config.redacted())
st.subheader("Topic catalog")
st.dataframe([{"topic": s.name, "partitions": s.partitions, "cleanup": s.cleanup,
               "retention h": s.retention_ms / 3_600_000 if s.retention_ms else None,
               "compression": s.compression, "description": s.description}
              for s in CATALOG.values()], hide_index=True, width="stretch")
