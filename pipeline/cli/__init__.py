"""Command line: ``python -m pipeline COMMAND``; one module per area registers its commands.

Every command reads the settings as the app does (environment over ``.env``); a ``PipelineError``
ends it with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline.cli import analysis_commands, bus_commands, ml_commands, optimise_commands, trading_commands
from pipeline.errors import PipelineError

AREAS = (bus_commands, ml_commands, trading_commands, optimise_commands, analysis_commands)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; return its exit code."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for area in AREAS:
        area.register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "run" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.fn(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code
