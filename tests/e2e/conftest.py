"""Fixtures for the browser tests: a real ``streamlit run`` server on a free port, on the embedded
bus with its files in a temporary directory, and Debian's Chromium driven by Playwright.

The browser is always ``/usr/bin/chromium`` (``scripts/setup-chromium.sh`` installs it); these
tests never download one. On a failed test, the page is saved to ``test-results/`` and the
assertion messages carry the tail of the server's output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "test-results"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HEALTH_DEADLINE_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A ``streamlit run app.py`` process and where its output goes."""

    url: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen = field(repr=False)

    def output(self, tail: int | None = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:] if tail else text

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited with {self.proc.returncode}"
        return f"server {self.url} ({state}); its output:\n{self.output()}"

    def stop(self) -> None:
        """SIGTERM the server's process group (it was started in its own session), then SIGKILL."""
        if self.proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc.poll() is None:
            self.proc.wait(5.0)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def streamlit_server(workdir: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start the app, wait until ``/_stcore/health`` answers ``ok``, stop it on the way out."""
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "STREAMLIT_"))}
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "SIMULATOR_SEED": "7",
            "SIMULATOR_TICK_MS": "500",
            "SIMULATOR_HISTORY_MINUTES": "180",
            "SYMBOLS": "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT",
            "STAGES": "simulator,market-store",
            # No KAFKA_BOOTSTRAP_SERVERS: the embedded bus. Empty (= unset for the app's config)
            # rather than absent, so a developer's .env naming a broker cannot win.
            "KAFKA_BOOTSTRAP_SERVERS": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "streamlit.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--server.fileWatcherType",
                "none",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(url=url, data_dir=data_dir, log_path=log_path, proc=proc)
    try:
        deadline = time.monotonic() + HEALTH_DEADLINE_S
        while not _healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited before it was healthy; {server.describe()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"/_stcore/health did not answer 'ok' within {HEALTH_DEADLINE_S:.0f} s; {server.describe()}"
                )
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One app server shared by the module's tests."""
    with streamlit_server(tmp_path_factory.mktemp("streamlit")) as s:
        yield s


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server no browser has visited yet (first-visit behaviour)."""
    with streamlit_server(tmp_path) as s:
        yield s


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup-chromium.sh (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass
class Tab:
    """A page plus the JavaScript errors it raised."""

    page: Page
    js_errors: list[str]


@pytest.fixture
def tab(browser, request: pytest.FixtureRequest) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    yield Tab(page, js_errors)
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        RESULTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):  # a screenshot is a courtesy; the failure is reported anyway
            page.screenshot(path=str(RESULTS / f"{request.node.name}-failure.png"), full_page=True)
    context.close()
