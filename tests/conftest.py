"""Shared fixtures: the ``smoke`` data profile built once per test session into a temp directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flywheel.config import load_params


@pytest.fixture(scope="session")
def params() -> dict:
    return load_params()


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory: pytest.TempPathFactory, params: dict) -> Path:
    """A data directory holding ``inventory/smoke`` and ``conversations/smoke`` (built in seconds)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip(
            "espeak-ng is not installed: run `bash pipelines/install_packages.sh` (the README's set-up does)"
        )
    from pipelines.build_conversations import build_conversations
    from pipelines.build_inventory import build_inventory

    root = tmp_path_factory.mktemp("data")
    build_inventory("smoke", root / "inventory" / "smoke", params=params, workers=2)
    build_conversations(
        "smoke", root / "inventory" / "smoke", root / "conversations" / "smoke", params=params
    )
    return root
