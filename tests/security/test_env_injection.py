"""The Settings page writes ``.env``: no value can add a line of its own, pull a secret in through
``${...}``, or change meaning on the way back; the refusal names the setting, never the value."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

import runtime
from pipeline.errors import ConfigError

BEFORE = "# mine\nUSER_ID=alice\nDISCORD_WEBHOOK_URL=https://discord.example/api/webhooks/1/planted-secret\n"
BREAKS = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "settings.env"
    path.write_text(BEFORE)
    monkeypatch.setattr(runtime, "ENV_FILE", path)
    for name in ("REPLAY_FILES", "NOTIFY_WEBHOOK_URL", "DATA_DIR", "MARKET_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.mark.parametrize("brk", BREAKS)
def test_a_line_break_in_any_form_cannot_add_a_setting(env_file: Path, brk: str) -> None:
    value = f"BTCUSDT=data/x.csv{brk}NOTIFY_WEBHOOK_URL=https://evil.example/hook{brk}DATA_DIR=/tmp/evil"
    with pytest.raises(ConfigError) as info:
        runtime.save_settings({"REPLAY_FILES": value})
    assert "REPLAY_FILES" in str(info.value) and "evil" not in str(info.value)
    assert env_file.read_text() == BEFORE


@pytest.mark.parametrize("value", ["${DISCORD_WEBHOOK_URL}", "a$b", "x'y", 'x"y', "C:\\data", "a\x00b", "a\tb"])
def test_interpolation_quotes_and_control_characters_are_refused(env_file: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="REPLAY_FILES must be a value on one line"):
        runtime.save_settings({"REPLAY_FILES": value})
    assert env_file.read_text() == BEFORE


def test_a_key_that_is_not_a_setting_name_is_refused(env_file: Path) -> None:
    with pytest.raises(ConfigError):
        runtime.save_settings({"X=1\nDATA_DIR": "y"})
    assert env_file.read_text() == BEFORE


def test_values_with_spaces_and_hashes_come_back_exactly(env_file: Path) -> None:
    value = "BTCUSDT=data/my candles #1.csv"
    runtime.save_settings({"REPLAY_FILES": value})
    assert dotenv_values(env_file)["REPLAY_FILES"] == value
    assert env_file.read_text().startswith(BEFORE)
