"""Every test here runs with MLflow isolated (``tests/mlflow_fixtures.py``: no runtime/, no server on
port 5000, the settings cache reset); ``sqlite_uri`` and ``dead_uri`` come from there too."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_mlflow_env(isolated_mlflow_env: None) -> None:
    """Switches on :func:`mlflow_fixtures.isolated_mlflow_env` for this folder."""
