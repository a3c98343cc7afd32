"""The evaluation run's MLflow logging (experiments/eval_tracking.py) on a local SQLite store: metric
names per set and collar, and one logged ``flywheel evaluate`` run with its artifacts and plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from experiments.eval_tracking import evaluation_metrics, log_evaluation, set_label


def test_evaluation_metrics_and_set_label() -> None:
    total = {"der": 0.2, "missed_rate": 0.1, "false_alarm_rate": 0.05, "confusion_rate": 0.05}
    report = {"total": {"collar_0": total, "collar_0.25": total}, "real_time_factor": 0.01}
    metrics = evaluation_metrics(report, set_label("data/conversations/full/test"))
    assert metrics["full-test/der_collar_0"] == 0.2
    assert metrics["full-test/confusion_collar_0.25"] == 0.05
    assert {"full-test/missed_collar_0", "full-test/false_alarm_collar_0"} <= set(metrics)


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
