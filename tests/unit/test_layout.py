"""Dependencies point one way: pages -> runtime -> pipeline, storage; domain packages below the
stages, the jobs, the API and the wiring; no import cycle anywhere in pipeline/ and storage/."""

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
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_modules(f) & {"streamlit", "runtime", "pages", "app"}) for f in files
    }
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(dirs: tuple[str, ...] = ("pipeline", "storage")) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere (top level, functions, TYPE_CHECKING)."""
    files = {module_name(f): f for d in dirs for f in ROOT.joinpath(d).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names)
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_in_pipeline_and_storage() -> None:
    graph = import_graph()
    assert len(graph) > 50
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


DOMAIN = (
    "pipeline.journal",
    "pipeline.ml",
    "pipeline.trading",
    "pipeline.sources",
    "pipeline.notify",
    "pipeline.candles",
    "pipeline.fanout",
    "pipeline.stocks",
)
ABOVE_DOMAIN = (
    "pipeline.stages",
    "pipeline.wiring",
    "pipeline.api",
    "pipeline.jobs",
    "pipeline.__main__",
    "pipeline.cli",
    "pipeline.status_board",
    "pipeline.processes",
)


def _offenders(graph: dict[str, set[str]], who: tuple[str, ...], never: tuple[str, ...]) -> dict[str, list[str]]:
    def within(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    return {
        m: sorted(d for d in deps if within(d, never))
        for m, deps in graph.items()
        if within(m, who) and any(within(d, never) for d in deps)
    }


def test_domain_packages_never_import_stages_jobs_the_api_or_the_wiring() -> None:
    assert _offenders(import_graph(), DOMAIN, ABOVE_DOMAIN) == {}


def test_storage_never_imports_the_pipelines_moving_parts() -> None:
    assert _offenders(import_graph(), ("storage",), ABOVE_DOMAIN) == {}


def test_only_the_cli_imports_the_wiring() -> None:
    def wiring(name: str) -> bool:
        return name == "pipeline.wiring" or name.startswith("pipeline.wiring.")

    importers = {m for m, deps in import_graph().items() if not wiring(m) and any(wiring(d) for d in deps)}
    assert importers and all(m.startswith("pipeline.cli.") for m in importers), importers


def test_stages_never_import_jobs_or_the_api() -> None:
    assert _offenders(import_graph(), ("pipeline.stages",), ("pipeline.jobs", "pipeline.api")) == {}


def test_pages_go_through_the_runtime_never_to_stages_or_the_wiring() -> None:
    pages = [ROOT / "app.py", *ROOT.joinpath("views").glob("*.py")]
    offenders = {}
    for page in pages:
        tree = ast.parse(page.read_text(), filename=str(page))
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        bad = sorted(n for n in names if n.startswith(("pipeline.stages", "pipeline.wiring")))
        if bad:
            offenders[page.name] = bad
    assert len(pages) > 5 and offenders == {}


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
        done = subprocess.run(
            [sys.executable, "-m", f"bench.{name}", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0 and "usage" in done.stdout, f"bench.{name}: {done.stderr[-500:]}"


def test_the_wiring_has_one_factory_per_name_of_the_stage_catalog() -> None:
    from pipeline.stage_catalog import CATALOG, KNOWN_STAGES
    from pipeline.wiring import WORKERS

    assert set(WORKERS) == KNOWN_STAGES
    assert len(KNOWN_STAGES) == len(CATALOG)  # no name twice
