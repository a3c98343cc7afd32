"""The paired model comparison: per-file DER of two models on one set, bootstrap verdict, report."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.compare_models import main
from flywheel.systems.onnx_system import release_model_path


def test_a_model_against_itself_is_a_draw(smoke_data: Path, tmp_path: Path) -> None:
    release = release_model_path("fast-cnn")
    main(
        model_b=release,
        model_a=release,
        system_name="fast-cnn",
        threshold_a=None,
        threshold_b=None,
        step_a=None,
        step_b=None,
        eval_set=smoke_data / "conversations" / "smoke" / "dev",
        samples=200,
        confidence=0.95,
        out_dir=tmp_path,
    )
    report = json.loads((tmp_path / "compare.json").read_text())
    assert len(report["files"]) == 2
    assert all(f["der_a"] == f["der_b"] for f in report["files"])
    diff = report["difference"]
    assert diff["delta"] == 0.0 and diff["low"] == 0.0 and diff["high"] == 0.0
    assert diff["verdict"] == "no significant difference"
    assert (tmp_path / "per_file.png").stat().st_size > 0
