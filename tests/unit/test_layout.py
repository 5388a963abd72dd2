"""Dependencies point one way: pipeline/ and storage/ never import streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pipeline_and_storage_never_import_streamlit_or_the_app() -> None:
    files = [*ROOT.joinpath("pipeline").rglob("*.py"), *ROOT.joinpath("storage").rglob("*.py")]
    assert len(files) > 10
    offenders = {str(f.relative_to(ROOT)): sorted(imported_modules(f) & {"streamlit", "runtime", "pages", "app"})
                 for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_the_walker_sees_streamlit_imports(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from streamlit import session_state\n")
    assert "streamlit" in imported_modules(sample)


def test_every_benchmark_answers_help() -> None:
    """Benchmarks run rarely; one that no longer imports or parses its arguments fails here instead."""
    import subprocess
    import sys

    benches = sorted(p.stem for p in ROOT.joinpath("bench").glob("*.py") if p.stem != "__init__")
    assert {"journal", "importer", "bus"} <= set(benches)
    for name in benches:
        done = subprocess.run([sys.executable, "-m", f"bench.{name}", "--help"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and "usage" in done.stdout, f"bench.{name}: {done.stderr[-500:]}"


def test_the_wiring_has_one_factory_per_name_of_the_stage_catalog() -> None:
    from pipeline.stage_catalog import CATALOG, KNOWN_STAGES
    from pipeline.wiring import WORKERS

    assert set(WORKERS) == KNOWN_STAGES
    assert len(KNOWN_STAGES) == len(CATALOG)  # no name twice
