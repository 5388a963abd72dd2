"""CI's short soak: ``python -m bench.soak --minutes 1`` (10 symbols, so training before the clock
starts stays short) ends with no dead letter from good traffic, every trade offered in the journal,
and a line per minute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)


def test_a_one_minute_soak_loses_nothing_and_dead_letters_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--minutes", "1", "--symbols", "10", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    minutes, summary = lines[:-1], lines[-1]
    assert [m["minute"] for m in minutes] == [1] and summary["summary"] is True
    assert summary["models_trained"] == 10
    assert summary["dead_letters"] == 0
    assert summary["all_stored"] and summary["trades_offered"] > 30_000
    assert set(minutes[0]["rss_mb"]) >= {"desk", "ml", "normalizer", "enricher", "behaviour", "journal-store"}
    assert all(mb and mb > 0 for mb in minutes[0]["rss_mb"].values())
    anon = minutes[0]["rss_anon_mb"]
    assert set(anon) == set(minutes[0]["rss_mb"])
    assert all(0 < anon[name] <= mb for name, mb in minutes[0]["rss_mb"].items())
