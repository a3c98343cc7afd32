"""The paired model comparison: per-file DER of two models on one set, bootstrap verdict, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.compare_models import main
from flywheel.systems.onnx_system import release_model_path


def compare(smoke_data: Path, out_dir: Path, pipeline_a: str = "", pipeline_b: str = "") -> dict:
    release = release_model_path("fast-cnn")
    main(
        model_b=release,
        model_a=release,
        system_name="fast-cnn",
        threshold_a=None,
        threshold_b=None,
        step_a=None,
        step_b=None,
        pipeline_a=pipeline_a,
        pipeline_b=pipeline_b,
        eval_set=smoke_data / "conversations" / "smoke" / "dev",
        samples=200,
        confidence=0.95,
        out_dir=out_dir,
    )
    return json.loads((out_dir / "compare.json").read_text())


def test_a_model_against_itself_is_a_draw(smoke_data: Path, tmp_path: Path) -> None:
    report = compare(smoke_data, tmp_path)
    assert report["params_a"] == report["params_b"]  # params.yaml as is
    assert len(report["files"]) == 2
    assert all(f["der_a"] == f["der_b"] for f in report["files"])
    assert all(f["turns_a"] == f["turns_b"] > 0 for f in report["files"])
    assert all(0 <= f["short_turns_a"] <= f["turns_a"] for f in report["files"])
    diff = report["difference"]
    assert diff["delta"] == 0.0 and diff["low"] == 0.0 and diff["high"] == 0.0
    assert diff["verdict"] == "no significant difference"
    assert (tmp_path / "per_file.png").stat().st_size > 0


def test_one_model_with_two_pipelines_is_reported_as_such(smoke_data: Path, tmp_path: Path) -> None:
    report = compare(smoke_data, tmp_path, pipeline_a="stitching=hard,smoothing_s=0")
    assert (report["params_a"]["stitching"], report["params_a"]["smoothing_s"]) == ("hard", 0.0)
    assert report["params_b"]["stitching"] == "soft"
    assert report["model_a"] == report["model_b"] and len(report["files"]) == 2


def test_an_unknown_pipeline_value_is_refused(smoke_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stitching"):
        compare(smoke_data, tmp_path, pipeline_b="stitching=average")
