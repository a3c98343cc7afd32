"""Shared fixtures: the ``smoke`` data profile built once per test session into a temp directory; the
real services (``service_fixtures.py``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.config import load_params

# the real services (MLflow, Label Studio) and the Serve launcher, shared by every test folder; the MLflow
# store fixtures of tests/registry and tests/experiments
pytest_plugins = ["service_fixtures", "mlflow_fixtures", "distilhubert_fixtures"]


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


@pytest.fixture(scope="session")
def smoke_checkpoint(smoke_data: Path, params: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``fast-cnn`` checkpoint trained once per session with the ``smoke`` recipe (one short epoch)."""
    from training.train import train

    out = tmp_path_factory.mktemp("smoke_model") / "ckpt"
    summary = train("fast-cnn", "smoke", out_dir=out, resume=False, params=params, data_dir=smoke_data)
    assert summary["epochs"] == 1 and 0.0 <= summary["best_dev_der"] <= 2.0
    return Path(summary["checkpoint"])


@pytest.fixture(scope="session")
def diarize_without_torch() -> Callable[[str, Path, Path], str]:
    """Runs ``get_system(name, model_path=onnx).diarize(wav)`` in a fresh interpreter, asserts torch was
    never imported on that inference path, and returns what it printed: ``<speakers> <speech seconds>``."""

    def run(name: str, onnx_path: Path, wav: Path) -> str:
        code = (
            "import sys; from flywheel.audio import load_audio; "
            "from flywheel.systems import get_system; "
            f"s = get_system({name!r}, model_path={str(onnx_path)!r}); "
            f"a = s.diarize(load_audio({str(wav)!r}), uri='x'); "
            "assert 'torch' not in sys.modules, 'torch imported on the inference path'; "
            "print(len(a.labels()), a.get_timeline().support().duration())"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    return run


@pytest.fixture(scope="session")
def smoke_onnx(smoke_checkpoint: Path) -> Path:
    """A small ``fast-cnn`` ONNX model (the smoke checkpoint, parity-checked export), built once.

    Shared by the training, MLflow registry and serving tests: anything that needs a real model file.
    """
    from training.export import export_onnx

    path = smoke_checkpoint.parent.parent / "fast-cnn.onnx"
    export_onnx(smoke_checkpoint, path, optimization="extended")
    return path
