"""The trader's journal: sources, parsers, the normalizer's FIFO ledger, enrichment, behaviour."""
