"""The desk's HTTP API (FastAPI): routes per area over an ``ApiContext``, served by ``ApiServer``."""
