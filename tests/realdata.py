"""Where the real third-party test data is: ``$REALDATA_DIR``, else ``shared/realdata`` beside the
repository or beside one of its parent folders (a worktree). Tests that read it skip without it."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def realdata_dir() -> Path:
    """The folder holding ``trades/`` and ``candles/`` (it may not exist)."""
    given = os.environ.get("REALDATA_DIR")
    if given:
        return Path(given)
    for parent in ROOT.parents:
        candidate = parent / "shared" / "realdata"
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared" / "realdata"
