"""The model registry: one SQLite row per trained version (table ``ml_models``) and one joblib file.

Files live at ``models_dir/SYMBOL/MODEL/vN.joblib`` and hold the ``Predictor`` with its symbol,
model and version, so a file moved or swapped by hand is caught at load. The ``path`` column is
the file's absolute path (a relative one, from older rows or by hand, is taken from
``models_dir``). A version becomes active only after its file has been loaded back;
activating one version deactivates the other versions of the same (symbol, model).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sqlite_utils

from pipeline.errors import PipelineError
from pipeline.ml.evaluate import Evaluation
from pipeline.ml.models import Predictor
from storage import models
from storage.db import Database

log = logging.getLogger(__name__)

FILE_FORMAT = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ModelLoadError(PipelineError):
    """A model file that is missing, corrupt or not the version its row names: that version
    stays (or becomes) inactive, the reason is recorded in ``load_error``, the rest goes on."""


class UnknownModelError(PipelineError):
    """A (symbol, model, version) the registry does not hold, or a name unfit for a path."""


@dataclass(frozen=True)
class ModelRecord:
    """One row of ``ml_models`` with its JSON columns decoded."""

    symbol: str
    model: str
    version: int
    active: bool
    created_at: int
    path: str
    interval_ms: int
    horizon: int
    train_start: int
    train_end: int
    n_samples: int
    features: tuple[str, ...]
    params: dict[str, Any]
    metrics: dict[str, Any]
    baselines: dict[str, Any]
    report: dict[str, Any]
    load_error: str | None

    @property
    def label(self) -> str:
        """Return ``SYMBOL/model/vN``, the version as signals name it."""
        return f"{self.symbol}/{self.model}/v{self.version}"


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: object) -> str:
    return json.dumps(value, default=_json_default)


def _record(row: dict[str, Any]) -> ModelRecord:
    return ModelRecord(
        symbol=row["symbol"],
        model=row["model"],
        version=int(row["version"]),
        active=bool(row["active"]),
        created_at=int(row["created_at"]),
        path=row["path"],
        interval_ms=int(row["interval_ms"]),
        horizon=int(row["horizon"]),
        train_start=int(row["train_start"]),
        train_end=int(row["train_end"]),
        n_samples=int(row["n_samples"]),
        features=tuple(json.loads(row["features"])),
        params=json.loads(row["params"]),
        metrics=json.loads(row["metrics"]),
        baselines=json.loads(row["baselines"]),
        report=json.loads(row["report"]),
        load_error=row["load_error"],
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class Registry:
    """Registers, lists, loads and activates model versions.

    Safe to call from any thread: writes go through the database's writer thread (one
    transaction each), reads use the calling thread's connection.
    """

    def __init__(self, db: Database, models_dir: Path) -> None:
        self.db = db
        self.models_dir = Path(models_dir)

    def file(self, record: ModelRecord) -> Path:
        """Return the absolute path of ``record``'s file."""
        path = Path(record.path)
        return path if path.is_absolute() else self.models_dir / path

    def register(
        self,
        symbol: str,
        predictor: Predictor,
        evaluation: Evaluation,
        *,
        interval_ms: int,
        train_start: int,
        train_end: int,
        n_samples: int,
        activate: bool = True,
    ) -> ModelRecord:
        """Store ``predictor`` as the next version of (symbol, its model) and return its record.

        The file is written atomically, then loaded back; only a file that loads is activated
        (when ``activate``). A file that does not load raises ModelLoadError and its row keeps
        the reason in ``load_error``.
        """
        name = predictor.name
        for part in (symbol, name):
            if not _SAFE_NAME.match(part):
                raise UnknownModelError(f"{part!r} cannot name a model directory")
        report = dict(evaluation.report)
        if report.get("importances") is None:
            report["importances"] = predictor.importances()
        written: list[Path] = []

        def insert(db: sqlite_utils.Database) -> int:
            version = models.next_version(db.conn, symbol, name)
            path = self.models_dir.resolve() / symbol / name / f"v{version}.joblib"
            self._dump(
                path,
                {"format": FILE_FORMAT, "symbol": symbol, "model": name, "version": version, "predictor": predictor},
            )
            written.append(path)
            models.insert(
                db.conn,
                (
                    symbol,
                    name,
                    version,
                    0,
                    int(time.time() * 1000),
                    str(path),
                    int(interval_ms),
                    int(predictor.horizon),
                    int(train_start),
                    int(train_end),
                    int(n_samples),
                    _dumps(list(predictor.features)),
                    _dumps(predictor.params),
                    _dumps(evaluation.metrics),
                    _dumps(evaluation.baselines),
                    _dumps(report),
                ),
            )
            return version

        try:
            version = self.db.write(insert)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        log.info("registered %s/%s/v%d", symbol, name, version)
        if activate:
            return self.activate(symbol, name, version)
        record = self._get(symbol, name, version)
        self._verify(record)
        return record

    def records(
        self, symbol: str | None = None, model: str | None = None, active_only: bool = False
    ) -> list[ModelRecord]:
        """Return the matching versions, newest first."""
        return [_record(r) for r in models.rows(self.db, symbol=symbol, model=model, active_only=active_only)]

    def active_versions(self) -> dict[tuple[str, str], int]:
        """(symbol, model) -> its active version, read without the records' metrics and reports."""
        return models.active_versions(self.db)

    def load(self, record: ModelRecord) -> Predictor:
        """Return the predictor in ``record``'s file; raise ModelLoadError naming file and reason."""
        path = self.file(record)
        if not path.exists():
            raise ModelLoadError(f"{path}: file is missing")
        try:
            payload = joblib.load(path)
        except Exception as exc:
            raise ModelLoadError(_one_line(f"{path}: cannot be read ({type(exc).__name__}: {exc})")) from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("predictor"), Predictor):
            raise ModelLoadError(f"{path}: does not hold a registry model")
        held = (payload.get("symbol"), payload.get("model"), payload.get("version"))
        if held != (record.symbol, record.model, record.version):
            raise ModelLoadError(f"{path}: holds {held[0]}/{held[1]}/v{held[2]}, expected {record.label}")
        predictor: Predictor = payload["predictor"]
        if tuple(predictor.features) != tuple(record.features) or predictor.horizon != record.horizon:
            raise ModelLoadError(f"{path}: features or horizon differ from the registry row")
        return predictor

    def activate(self, symbol: str, model: str, version: int) -> ModelRecord:
        """Make ``version`` the active one of (symbol, model) once its file loads; return it."""
        record = self._get(symbol, model, version)
        self._verify(record)

        self.db.write(lambda db: models.activate(db.conn, symbol, model, version))
        log.info("activated %s", record.label)
        return self._get(symbol, model, version)

    def set_load_error(self, symbol: str, model: str, version: int, error: str | None) -> None:
        """Record (or clear, with None) why a version's file does not load; activity is unchanged."""
        text = None if error is None else _one_line(error)
        self.db.write(lambda db: models.set_load_error(db.conn, symbol, model, version, text))

    def _get(self, symbol: str, model: str, version: int) -> ModelRecord:
        rows = models.rows(self.db, symbol=symbol, model=model, version=version)
        if not rows:
            raise UnknownModelError(f"no model {symbol}/{model}/v{version} in the registry")
        return _record(rows[0])

    def _verify(self, record: ModelRecord) -> None:
        try:
            self.load(record)
        except ModelLoadError as exc:
            self.set_load_error(record.symbol, record.model, record.version, str(exc))
            log.warning("model not activated: %s", exc)
            raise

    @staticmethod
    def _dump(path: Path, payload: dict[str, Any]) -> None:
        """Write ``payload`` to ``path`` atomically (a temporary file, fsync, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                joblib.dump(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
