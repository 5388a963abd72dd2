"""What every command shares: the configuration, read as the app reads it (environment over ``.env``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dotenv import dotenv_values

from pipeline.config import Config, load_config

if TYPE_CHECKING:
    from pipeline.ml.registry import Registry
    from storage.db import Database


def config_from_env() -> Config:
    """The settings of the current folder's ``.env`` with the environment over them."""
    env = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}
    return load_config(env)


def open_store(config: Config) -> tuple[Database, Registry]:
    """The desk's store and model registry under ``DATA_DIR`` (imported here, so other commands stay light)."""
    from pipeline.ml.registry import Registry
    from storage.db import open_database

    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config)
    return db, Registry(db, config.data_dir / "models")


def figure(value: object, pct: bool = False) -> str:
    """A figure for a table: "-" when missing, a signed percentage, or three decimals."""
    if value is None:
        return "-"
    return f"{value:+.2f}%" if pct else f"{value:.3f}" if isinstance(value, float) else str(value)


def metric_text(value: object, pct: bool = False) -> str:
    """A backtest figure, or "—" when the period cannot give it (the reason is printed below the table)."""
    return "—" if value is None else figure(value, pct)
