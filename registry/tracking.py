"""MLflow experiment tracking for ``flywheel train`` and ``flywheel evaluate``.

Every run records its parameters, the dataset version (DVC hashes of the data it used), the git
commit, its metrics (dev DER per epoch; DER per evaluation set at collars 0 and 0.25 with missed /
false alarm / confusion; latency P50/P99 from the benchmark report when there is one) and its
artifacts (ONNX model, hypothesis RTTMs, report, plots).

MLflow being down never stops training or evaluation: :func:`start_run` probes ``/health`` with a
short timeout and returns a no-op :class:`Tracker` after printing
``MLflow unreachable at <uri>: nothing logged``; a failure in the middle of a run disables logging
for the rest of it with a warning.
"""

from __future__ import annotations

import atexit
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from flywheel.config import REPO_ROOT, get_settings
from registry.mlflow_utils import (
    configure_client,
    dataset_version,
    file_sha256,
    flatten,
    get_or_create_experiment,
    git_commit,
    is_reachable,
    tracking_uri,
    unreachable_message,
)

BENCHMARK_REPORT = REPO_ROOT / "reports" / "benchmarks" / "diarization.json"


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Tracker:
    """No-op tracker: what a run gets when tracking is off or MLflow is unreachable."""

    active = False
    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        """Log (flattened) parameters."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics (non-finite values are skipped)."""

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set run tags."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a whole directory."""

    def end(self, status: str = "FINISHED") -> None:
        """Close the run (``FINISHED``, ``FAILED`` or ``KILLED``)."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.end("FINISHED" if exc_type is None else "FAILED")


class MlflowTracker(Tracker):
    """One MLflow run; any client error disables further logging (the job itself goes on)."""

    def __init__(self, client: Any, run_id: str, uri: str):
        self.client, self.run_id, self.uri = client, run_id, uri
        self.active = True
        self._ended = False
        atexit.register(self._end_at_exit)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        if not self.active:
            return
        try:
            fn(*args, **kwargs)
        except Exception as err:  # MLflow down mid-run, quota, bad value: never fail the job
            self.active = False
            _warn(f"MLflow logging failed ({what}) at {self.uri}: {err}; nothing more logged for this run")

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):  # the REST API takes at most 100 params per batch
            self._call("params", self.client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in metrics.items()
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        if items:
            self._call("metrics", self.client.log_batch, self.run_id, metrics=items)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items() if v is not None]
        self._call("tags", self.client.log_batch, self.run_id, tags=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self._call(f"artifacts {path}", self.client.log_artifacts, self.run_id, str(path), artifact_path)
        elif path.is_file():
            self._call(f"artifact {path}", self.client.log_artifact, self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self._ended:
            return
        self._ended = True
        atexit.unregister(self._end_at_exit)
        was_active = self.active
        self._call("end", self.client.set_terminated, self.run_id, status)
        if was_active and self.active:
            print(f"MLflow run {self.run_id} logged at {self.uri}", file=sys.stderr, flush=True)

    def _end_at_exit(self) -> None:
        """A crashed or interrupted job leaves a FAILED run, not a RUNNING one."""
        self.end("FAILED")


def start_run(
    kind: str,
    run_name: str,
    *,
    tags: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    enabled: bool = True,
    uri: str | None = None,
    experiment: str | None = None,
) -> Tracker:
    """Open an MLflow run (``kind``: train, evaluate, register ...) or return a no-op tracker.

    Prints ``MLflow unreachable at <uri>: nothing logged`` when the server does not answer ``/health``
    within ``mlflow_timeout_s`` (2 s by default).
    """
    if not enabled:
        return Tracker()
    uri = tracking_uri(uri)
    configure_client()
    if not is_reachable(uri):
        _warn(unreachable_message(uri))
        return Tracker()
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        experiment_id = get_or_create_experiment(client, experiment or get_settings().mlflow_experiment, uri)
        all_tags = {"kind": kind, "git_commit": git_commit(), **(tags or {})}
        run = client.create_run(
            experiment_id,
            run_name=run_name,
            tags={k: str(v) for k, v in all_tags.items() if v is not None},
        )
    except Exception as err:
        _warn(f"{unreachable_message(uri)} ({err})")
        return Tracker()
    tracker = MlflowTracker(client, run.info.run_id, uri)
    if params:
        tracker.log_params(params)
    return tracker


# ---------------------------------------------------------------- training


def training_tracker(
    enabled: bool,
    model_type: str,
    config_name: str,
    recipe: dict[str, Any],
    params: dict[str, Any],
    data_paths: list[Path],
    uri: str | None = None,
) -> Tracker:
    """The run of one ``flywheel train``: recipe, architecture, seed, dataset version as parameters."""
    if not enabled:
        return Tracker()
    version = dataset_version(data_paths)
    return start_run(
        "train",
        f"train-{model_type}-{config_name}",
        tags={"model_type": model_type, "config": config_name, "dataset_version": version},
        params={
            "model_type": model_type,
            "config": config_name,
            "seed": params.get("seed"),
            "train": recipe,
            "model": params.get("models", {}).get(model_type, {}),
            "dataset_version": version,
        },
        uri=uri,
    )


def finish_training(tracker: Tracker, summary: dict[str, Any], out_dir: Path, dev_dir: Path) -> None:
    """Summary metrics, ``summary.json``, and the best checkpoint exported to ONNX (+ a dev timeline)."""
    if not tracker.active:
        return
    tracker.log_metrics(
        {"best_dev_der": summary["best_dev_der"], "epochs": summary["epochs"], "steps": summary["steps"]}
    )
    tracker.set_tags({"best_threshold": summary["best_threshold"]})
    tracker.log_artifact(out_dir / "summary.json")
    checkpoint = Path(summary["checkpoint"])
    if checkpoint.exists():
        try:
            from training.export import export_onnx

            onnx_path = out_dir / f"{summary['model_type']}.onnx"
            report = export_onnx(checkpoint, onnx_path, optimization="extended")
            tracker.log_artifact(onnx_path, "onnx")
            tracker.set_tags({"onnx_sha256": file_sha256(onnx_path), "onnx_parity": report["max_abs_diff"]})
            _log_dev_timeline(tracker, summary, onnx_path, dev_dir)
        except Exception as err:  # export problems are reported, training results stay logged
            _warn(f"ONNX export for MLflow failed: {err}")
    tracker.end()


def _log_dev_timeline(tracker: Tracker, summary: dict[str, Any], onnx_path: Path, dev_dir: Path) -> None:
    """Diarize the first dev file with the exported model and log reference vs hypothesis."""
    from experiments.plots import timeline_chart
    from flywheel.audio import load_audio
    from flywheel.systems import get_system
    from flywheel.testset import iter_test_set

    item = next(iter(iter_test_set(dev_dir)))
    system = get_system(summary["model_type"], model_path=onnx_path, threshold=summary["best_threshold"])
    hypothesis = system.diarize(load_audio(item.audio_path), uri=item.uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = timeline_chart(
            item.reference, hypothesis, Path(tmp) / f"timeline_{item.uri}.png", f"dev {item.uri}"
        )
        tracker.log_artifact(path, "plots")


# ---------------------------------------------------------------- evaluation


def set_label(test_set: str | Path) -> str:
    """Short name of an evaluation set: ``data/conversations/full/test`` -> ``full-test``."""
    parts = Path(test_set).resolve().parts
    return "-".join(parts[-2:])


def evaluation_metrics(report: dict[str, Any], label: str) -> dict[str, float]:
    """``<label>/der_collar_0``, ``<label>/missed_collar_0``, ... for every collar of a report."""
    names = {
        "der": "der",
        "missed_rate": "missed",
        "false_alarm_rate": "false_alarm",
        "confusion_rate": "confusion",
        "speaker_count_error": "speaker_count_error",
    }
    metrics: dict[str, float] = {}
    for collar_key, total in report["total"].items():
        for key, name in names.items():
            if key in total:
                metrics[f"{label}/{name}_{collar_key}"] = float(total[key])
    metrics[f"{label}/real_time_factor"] = float(report.get("real_time_factor", math.nan))
    return metrics


def benchmark_latency(system_name: str, path: Path = BENCHMARK_REPORT) -> dict[str, Any] | None:
    """``{"p50_ms", "p99_ms", "model"}`` of a system's forward pass from the benchmark report, if any."""
    try:
        forward = json.loads(path.read_text())["systems"][system_name]["forward"]
        return {"p50_ms": float(forward["p50_ms"]), "p99_ms": float(forward["p99_ms"]), **forward}
    except (OSError, KeyError, TypeError, ValueError):
        return None


def log_evaluation(
    report: dict[str, Any],
    out_dir: Path,
    *,
    system_name: str,
    test_set: Path,
    model_path: Path | None = None,
    enabled: bool = True,
    uri: str | None = None,
    benchmark: Path = BENCHMARK_REPORT,
) -> str | None:
    """Log one ``flywheel evaluate`` run; returns the MLflow run id (``None`` when nothing was logged)."""
    if not enabled:
        return None
    from flywheel.config import load_params

    label = set_label(test_set)
    system_params = load_params().get("systems", {}).get(system_name, {})
    tracker = start_run(
        "evaluate",
        f"evaluate-{system_name}-{label}",
        tags={
            "system": system_name,
            "test_set": str(test_set),
            "eval_set": label,
            "dataset_version": dataset_version([test_set]),
            "onnx_sha256": file_sha256(model_path) if model_path and model_path.is_file() else None,
        },
        params={
            "system": system_name,
            "test_set": str(test_set),
            "files": len(report["files"]),
            "system_params": system_params,
            "model_path": str(model_path) if model_path else "none",
        },
        enabled=enabled,
        uri=uri,
    )
    if not tracker.active:
        return None
    with tracker:
        tracker.log_metrics(evaluation_metrics(report, label))
        latency = benchmark_latency(system_name, benchmark)
        if latency:
            tracker.log_metrics({"latency_p50_ms": latency["p50_ms"], "latency_p99_ms": latency["p99_ms"]})
            tracker.set_tags({"latency_model": latency.get("model")})
        tracker.log_artifact(out_dir / "report.json")
        tracker.log_artifact(out_dir / "rttm", "rttm")
        if model_path and model_path.is_file():
            tracker.log_artifact(model_path, "onnx")
        _log_evaluation_plots(tracker, report, out_dir, test_set)
    return tracker.run_id


def _log_evaluation_plots(tracker: Tracker, report: dict[str, Any], out_dir: Path, test_set: Path) -> None:
    """DER per file (both collars) and the timeline of the first file of the set."""
    from experiments.plots import der_per_file_chart, timeline_chart
    from flywheel.segments import read_rttm
    from flywheel.testset import iter_test_set

    plots = out_dir / "plots"
    try:
        for key in report["total"]:
            collar = float(key.split("_", 1)[1])
            chart = der_per_file_chart(report, plots / f"der_per_file_{key}.png", collar)
            tracker.log_artifact(chart, "plots")
        item = next(iter(iter_test_set(test_set)))
        rttm = out_dir / "rttm" / f"{item.uri}.rttm"
        hypothesis = read_rttm(rttm).get(item.uri) if rttm.exists() else None
        if hypothesis is not None:
            title = f"{report['system']}: {item.uri}"
            path = timeline_chart(item.reference, hypothesis, plots / f"timeline_{item.uri}.png", title)
            tracker.log_artifact(path, "plots")
    except Exception as err:  # a plot must never fail an evaluation
        _warn(f"evaluation plots failed: {err}")
