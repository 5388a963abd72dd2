"""Shared by the AppTests: the app's runtime recorded and reset around each test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `import runtime` must work however pytest was started
    sys.path.insert(0, str(ROOT))

import runtime  # noqa: E402 - after the sys.path insert above


@pytest.fixture
def built_runtimes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[runtime.Runtime]]:
    """Every runtime the pages build, on the embedded bus under ``tmp_path``; stopped afterwards.

    ``runtime.get_runtime`` is an ``st.cache_resource`` shared by the whole process, so it is
    emptied before and after. The env beats any developer ``.env`` (read from the repo root);
    tests add their own settings with ``monkeypatch.setenv``.
    """
    built: list[runtime.Runtime] = []
    real_build = runtime.build_runtime

    def build_and_record(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(runtime, "build_runtime", build_and_record)
    runtime.get_runtime.clear()
    monkeypatch.chdir(ROOT)  # get_runtime reads ".env" relative to the working directory
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")  # empty = embedded bus, even if .env names a broker
    yield built
    runtime.get_runtime.clear()
    for rt in built:
        rt.stop()
    assert len(built) <= 1, f"the pages built {len(built)} runtimes; st.cache_resource should share one"
