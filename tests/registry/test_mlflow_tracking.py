"""Experiment tracking helpers on a local SQLite store: dataset version, metrics, outage behaviour."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from registry.mlflow_utils import dataset_version, unreachable_message
from registry.tracking import (
    MlflowTracker,
    Tracker,
    benchmark_latency,
    evaluation_metrics,
    log_evaluation,
    set_label,
    start_run,
)


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


def test_evaluation_metrics_and_set_label() -> None:
    total = {"der": 0.2, "missed_rate": 0.1, "false_alarm_rate": 0.05, "confusion_rate": 0.05}
    report = {"total": {"collar_0": total, "collar_0.25": total}, "real_time_factor": 0.01}
    metrics = evaluation_metrics(report, set_label("data/conversations/full/test"))
    assert metrics["full-test/der_collar_0"] == 0.2
    assert metrics["full-test/confusion_collar_0.25"] == 0.05
    assert {"full-test/missed_collar_0", "full-test/false_alarm_collar_0"} <= set(metrics)


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


def test_log_evaluation(sqlite_uri: str, smoke_data: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    test_set = smoke_data / "conversations" / "smoke" / "test"
    out = tmp_path / "report"
    (out / "rttm").mkdir(parents=True)
    uris = sorted(p.stem for p in test_set.glob("*.rttm"))
    for uri in uris:  # the reference as hypothesis: DER 0
        shutil.copy(test_set / f"{uri}.rttm", out / "rttm" / f"{uri}.rttm")
    zero = {"der": 0.0, "missed_rate": 0.0, "false_alarm_rate": 0.0, "confusion_rate": 0.0}
    report = {
        "system": "oracle",
        "test_set": str(test_set),
        "files": [{"uri": u, "collar_0": zero, "collar_0.25": zero} for u in uris],
        "total": {"collar_0": zero, "collar_0.25": zero},
        "real_time_factor": 0.001,
    }
    (out / "report.json").write_text(json.dumps(report))
    model = tmp_path / "oracle.onnx"
    model.write_bytes(b"not really a model")
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"systems": {"oracle": {"forward": {"p50_ms": 1.5, "p99_ms": 2.5}}}}))

    run_id = log_evaluation(
        report,
        out,
        system_name="oracle",
        test_set=test_set,
        model_path=model,
        uri=sqlite_uri,
        benchmark=bench,
    )
    client = MlflowClient(tracking_uri=sqlite_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["smoke-test/der_collar_0"] == 0.0
    assert run.data.metrics["latency_p99_ms"] == 2.5
    assert run.data.tags["dataset_version"].startswith("untracked:test@")
    assert run.data.tags["git_commit"] and run.data.params["system"] == "oracle"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.json", "rttm", "onnx", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert "plots/der_per_file_collar_0.png" in plots
    assert f"plots/timeline_{uris[0]}.png" in plots
