"""MLflow fixtures shared by ``tests/registry`` and ``tests/experiments`` (``pytest_plugins`` of
``tests/conftest.py``): a migrated SQLite store copied per test, a tracking URI where nothing answers,
and the per-test isolation both folders switch on with an autouse fixture in their ``conftest.py``.
The session's real ``mlflow server`` is ``mlflow_server`` in ``tests/service_fixtures.py``.

Nothing here is autouse: a plugin's autouse fixture would run for every test of the suite.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_fixtures import free_port

from flywheel.config import get_settings


@pytest.fixture
def dead_uri() -> str:
    """A tracking URI where nothing answers (MLflow down)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def isolated_mlflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
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
