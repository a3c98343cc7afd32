"""MLflow run logging (registry/tracking.py) on a local SQLite store: dataset version, benchmark latency,
outage behaviour."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from registry.mlflow_utils import dataset_version, unreachable_message
from registry.tracking import MlflowTracker, Tracker, benchmark_latency, start_run


def test_dataset_version_from_dvc_lock(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  conversations@full:\n    outs:\n"
        "    - path: data/conversations/full\n      hash: md5\n"
        "      md5: d7cf1c663e366265df68fdf3d2bd80bf.dir\n"
    )
    test_set = tmp_path / "data" / "conversations" / "full" / "test"
    assert dataset_version([test_set], repo=tmp_path) == "data/conversations/full@d7cf1c663e36"


def test_dataset_version_of_untracked_data_follows_content(tmp_path: Path) -> None:
    data = tmp_path / "smoke"
    data.mkdir()
    (data / "a.rttm").write_text("x")
    first = dataset_version([data], repo=tmp_path)
    assert first.startswith("untracked:smoke@")
    (data / "a.rttm").write_text("xy")
    assert dataset_version([data], repo=tmp_path) != first


def test_benchmark_latency(tmp_path: Path) -> None:
    path = tmp_path / "diarization.json"
    assert benchmark_latency("fast-cnn", path) is None
    path.write_text(json.dumps({"systems": {"fast-cnn": {"forward": {"p50_ms": 2.0, "p99_ms": 3.5}}}}))
    assert benchmark_latency("fast-cnn", path)["p99_ms"] == 3.5
    assert benchmark_latency("baseline", path) is None


def test_unreachable_mlflow_is_a_noop_with_a_message(dead_uri: str, capsys: pytest.CaptureFixture) -> None:
    started = time.perf_counter()
    tracker = start_run("evaluate", "x", uri=dead_uri)
    assert type(tracker) is Tracker and not tracker.active
    tracker.log_metrics({"der": 0.1})  # no-ops
    tracker.end()
    assert unreachable_message(dead_uri) in capsys.readouterr().err
    assert f"MLflow unreachable at {dead_uri}: nothing logged" == unreachable_message(dead_uri)
    assert time.perf_counter() - started < 5


def test_failure_mid_run_disables_logging(sqlite_uri: str, capsys: pytest.CaptureFixture) -> None:
    tracker = start_run("train", "flaky", uri=sqlite_uri)
    assert isinstance(tracker, MlflowTracker) and tracker.active

    def broken(*_: object, **__: object) -> None:
        raise ConnectionError("server went away")

    tracker.client.log_batch = broken
    tracker.log_metrics({"dev_der": 0.5}, step=1)  # must not raise
    assert not tracker.active
    assert "server went away" in capsys.readouterr().err
    tracker.log_metrics({"dev_der": 0.4}, step=2)
    tracker.end()
