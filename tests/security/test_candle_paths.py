"""Candle files from a page: only regular files in the candle folder (or an upload saved there),
size-capped, one error for anything else, and never the file's content in an error."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.candle_files import CandleFolder
from pipeline.candles import CandleFileError
from pipeline.config import Config
from pipeline.jobs.backtests import BacktestRequest, run_request
from pipeline.jobs.optimise import OptimiseRequest, run_optimisation
from pipeline.jobs.training import load_bars

SECRET = "NOTIFY_WEBHOOK_URL=https://hooks.example/planted-secret-7f3a"
KLINES = Path(__file__).resolve().parents[1] / "fixtures" / "candles" / "BTCUSDT-1m-2024-11-16.csv"


@pytest.fixture
def desk(tmp_path: Path) -> Config:
    folder = tmp_path / "candles"
    folder.mkdir()
    (folder / "good.csv").write_bytes(KLINES.read_bytes())
    (folder / "sub").mkdir()
    (tmp_path / ".env").write_text(SECRET + "\n")
    (folder / "link-to-env").symlink_to(tmp_path / ".env")
    (folder / "link-to-zero").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo")
    return replace(Config(), data_dir=tmp_path, candle_dir=folder, candle_max_bytes=64 * 1024)


def page_read(config: Config, name: str) -> str:
    with pytest.raises(CandleFileError) as info:
        load_bars(config, None, "BTCUSDT", "file", path=name)  # type: ignore[arg-type]
    return str(info.value)


HOSTILE = [
    "/etc/shadow",
    "/etc/passwd",
    "../../../../../../etc/passwd",
    "../.env",
    "/proc/self/environ",
    "/dev/zero",
    "link-to-env",
    "link-to-zero",
    "sub",
    "fifo",
    "missing.csv",
    "/nonexistent/x.csv",
    "good.csv\x00.txt",
    ".",
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", HOSTILE)
def test_a_page_reads_nothing_outside_the_folder_and_every_refusal_reads_the_same(desk: Config, name: str) -> None:
    message = page_read(desk, name)
    assert message == f"no candle file {name!r} in the candle folder (CANDLE_DIR): pick one of its files or upload one"
    assert "planted-secret" not in message and "root:" not in message


def test_the_folder_file_reads_and_a_huge_or_foreign_file_says_so_without_content(desk: Config) -> None:
    frame, interval = load_bars(desk, None, "BTCUSDT", "file", path="good.csv")  # type: ignore[arg-type]
    assert len(frame) == 10 and interval == 60_000
    (desk.candle_dir / "big.csv").write_bytes(b"x" * (desk.candle_max_bytes + 1))
    assert "more than the limit" in page_read(desk, "big.csv")
    (desk.candle_dir / "secret.csv").write_text(SECRET + ",a,b\n1,2,3\n")
    message = page_read(desk, "secret.csv")
    assert "not a candle file" in message and "3 columns" in message
    assert "planted-secret" not in message and "NOTIFY" not in message


def test_the_command_line_still_reads_any_file_it_is_given(desk: Config) -> None:
    frame, _ = load_bars(desk, None, "BTCUSDT", "file", path=str(KLINES), any_path=True)  # type: ignore[arg-type]
    assert len(frame) == 10


def test_a_backtest_request_from_a_page_is_confined_too(desk: Config) -> None:
    request = BacktestRequest(symbols=("BTCUSDT",), source="file", path="/etc/passwd")
    with pytest.raises(CandleFileError, match="no candle file '/etc/passwd' in the candle folder"):
        run_request(desk, None, request)  # type: ignore[arg-type]


def test_an_optimisation_from_a_page_is_confined_too(desk: Config) -> None:
    request = OptimiseRequest(symbol="BTCUSDT", source="file", path="/etc/passwd")
    with pytest.raises(CandleFileError, match="no candle file '/etc/passwd' in the candle folder"):
        run_optimisation(desk, None, request)  # type: ignore[arg-type]
    assert "any_path" not in OptimiseRequest(symbol="BTCUSDT", any_path=True).to_json()  # not stored with a run


def test_an_upload_is_checked_by_content_saved_once_and_then_readable(desk: Config) -> None:
    folder = CandleFolder(desk.candle_dir, desk.candle_max_bytes)
    with pytest.raises(CandleFileError) as info:
        folder.save_upload("../../evil.csv", (SECRET + ",x,y\n").encode())
    assert "planted-secret" not in str(info.value)
    with pytest.raises(CandleFileError, match="more than the limit"):
        folder.save_upload("big.csv", b"1" * (desk.candle_max_bytes + 1))
    name = folder.save_upload("../../BTC klines.csv", KLINES.read_bytes())
    assert name.startswith("uploads/BTC-klines-") and name.endswith(".csv")
    assert folder.save_upload("../../BTC klines.csv", KLINES.read_bytes()) == name  # the same content once
    assert (desk.candle_dir / name).is_file() and not (desk.candle_dir.parent.parent / "evil.csv").exists()
    assert name in folder.names() and "good.csv" in folder.names()
    assert "fifo" not in folder.names() and "sub" not in folder.names()
    frame, _ = load_bars(desk, None, "BTCUSDT", "file", path=name)  # type: ignore[arg-type]
    assert len(frame) == 10
