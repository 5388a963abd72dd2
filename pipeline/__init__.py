"""The event pipeline: buses, topics, message contracts, sources, stages and their runner.

Nothing in this package imports streamlit; pages reach it through the top-level ``runtime``.
"""
