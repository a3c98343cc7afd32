"""MLflow logging of one ``flywheel evaluate`` run: the system, its parameters and the evaluation set
with its dataset version; DER per set at collars 0 and 0.25 with missed / false alarm / confusion;
latency P50/P99 from the benchmark report when there is one; the report, the hypothesis RTTMs, the
ONNX model and the plots (generic run logging: :mod:`registry.tracking`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from registry.mlflow_utils import dataset_version, file_sha256
from registry.tracking import BENCHMARK_REPORT, Tracker, benchmark_latency, start_run, warn


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
    from experiments.plots import der_per_file_chart
    from flywheel.plots import timeline_chart
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
        warn(f"evaluation plots failed: {err}")
