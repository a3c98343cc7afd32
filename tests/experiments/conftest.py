"""MLflow fixtures: a migrated SQLite store copied per test, and one real ``mlflow server`` per session."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.config import get_settings


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dead_uri() -> str:
    """A tracking URI where nothing answers (MLflow down)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(autouse=True)
def _isolated_mlflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test touches runtime/ or a server on port 5000; the settings cache is reset around each test."""
    monkeypatch.setenv("FLYWHEEL_MODEL_CACHE_DIR", str(tmp_path / "model-cache"))
    monkeypatch.setenv("FLYWHEEL_MLFLOW_DIR", str(tmp_path / "mlflow-runtime"))
    monkeypatch.setenv("FLYWHEEL_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("FLYWHEEL_RUNTIME_DIR", str(tmp_path / "runtime"))  # the gate key lives there
    monkeypatch.delenv("FLYWHEEL_GATE_KEY", raising=False)
    monkeypatch.setenv("FLYWHEEL_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite tracking store with MLflow's migrations applied (once: about 8 s)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def sqlite_uri(_template_db: Path, tmp_path: Path) -> str:
    """A fresh, empty SQLite tracking + registry store (artifacts in ``artifacts/`` next to it)."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(_template_db, db)
    return f"sqlite:///{db}"


class ServerHandle:
    """A real ``mlflow server`` launched in the background; :attr:`url` waits for ``/health``."""

    def __init__(self, cfg: object, proc: object):
        self.cfg, self.proc, self._ready = cfg, proc, False

    @property
    def url(self) -> str:
        from experiments.mlflow_server import wait_healthy

        if not self._ready:
            if not wait_healthy(self.cfg.url, 240.0, self.proc):
                log = self.cfg.log_file.read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not start:\n{log}")
            self._ready = True
        return self.cfg.url


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One real MLflow server on a free loopback port for the whole session, stopped at the end.

    It is launched without waiting, so its slow first start overlaps with whatever fixture comes
    next (list it first in a test's arguments); ``handle.url`` waits until it answers.
    """
    from experiments.mlflow_server import ServerConfig, launch, stop_server

    cfg = ServerConfig(port=free_port(), root=tmp_path_factory.mktemp("mlflow-server"))
    handle = ServerHandle(cfg, launch(cfg))
    yield handle
    stop_server(cfg)
