"""Seed 003's stock analysis rules: news (ids, tagging, categories), triggers, technical and
sentiment analysis (a lexicon, and an optional LLM), and their aggregation into alerts.

Pure rules and their settings; the stages (``pipeline.stages``) move messages and the store
(``storage.analysis``) keeps what they make. Nothing here imports a stage, a job, the API or the
wiring.
"""
