"""The training run's MLflow logging (training/train_tracking.py) on a local SQLite store: the smoke
checkpoint's run gets its parameters, summary metrics, the best checkpoint as ONNX and a dev timeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.train_tracking import finish_training, training_tracker


@pytest.fixture
def isolated(isolated_mlflow_env: None) -> None:
    """No runtime/ and no server on port 5000 (tests/mlflow_fixtures.py)."""


def test_finish_training_logs_the_onnx_export_and_a_dev_timeline(
    isolated: None, smoke_checkpoint: Path, smoke_data: Path, params: dict, sqlite_uri: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(smoke_checkpoint.parent / "summary.json", out / "summary.json")
    summary = json.loads((out / "summary.json").read_text())
    dev = smoke_data / "conversations" / "smoke" / "dev"
    tracker = training_tracker(True, "fast-cnn", "smoke", {"epochs": 1}, params, [dev], uri=sqlite_uri)
    assert tracker.active
    finish_training(tracker, summary, out, dev)

    client = MlflowClient(tracking_uri=sqlite_uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["kind"] == "train"
    assert run.data.params["model_type"] == "fast-cnn" and run.data.params["train.epochs"] == "1"
    assert run.data.metrics["best_dev_der"] == summary["best_dev_der"]
    assert run.data.tags["onnx_sha256"] and float(run.data.tags["onnx_parity"]) >= 0.0
    assert {"summary.json", "onnx", "plots"} <= {a.path for a in client.list_artifacts(tracker.run_id)}
    assert [a.path for a in client.list_artifacts(tracker.run_id, "onnx")] == ["onnx/fast-cnn.onnx"]
    [timeline] = client.list_artifacts(tracker.run_id, "plots")
    assert timeline.path.startswith("plots/timeline_") and timeline.path.endswith(".png")
