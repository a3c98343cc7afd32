"""MLflow logging of one ``flywheel train`` run: the recipe, architecture, seed and dataset version
as parameters; dev DER per epoch (logged by the training loop); at the end the summary, the best
checkpoint exported to ONNX and the timeline of a dev file diarized with it (generic run logging:
:mod:`registry.tracking`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from registry.mlflow_utils import dataset_version, file_sha256
from registry.tracking import Tracker, start_run, warn


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
            warn(f"ONNX export for MLflow failed: {err}")
    tracker.end()


def _log_dev_timeline(tracker: Tracker, summary: dict[str, Any], onnx_path: Path, dev_dir: Path) -> None:
    """Diarize the first dev file with the exported model and log reference vs hypothesis."""
    from flywheel.audio import load_audio
    from flywheel.plots import timeline_chart
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
