"""Operating the pipeline: browse any topic, redrive dead letters, rewind a consumer group, the
health check's round trip.

These are the rules; the Pipeline page (``views/pipeline_*.py``) and the command line
(``pipeline/cli/ops_commands.py``) are two faces of them. Everything here reads the bus through
``Bus.read`` and ``Bus.offsets_for_time``, which join no consumer group and commit nothing, and
changes a group only through ``Bus.reset_offsets``, which refuses a group with members.
"""
