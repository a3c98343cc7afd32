"""The chunk-batching benchmark: how many chunks one request batches, and a real timing run."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from benchmarks.chunk_batching import main, request_batch


def test_one_ten_second_request_batches_its_chunks() -> None:
    assert request_batch(5.0, 1.25) == 5  # the Fast CNN: starts 0, 1.25, ..., 5.0
    assert request_batch(1.5, 0.75) == 12  # DistilHuBERT
    assert request_batch(10.0, 2.5) == 1  # a chunk as long as the clip
    assert request_batch(5.0, 1.25, clip_s=3.0) == 1


def test_the_benchmark_times_each_batch_and_writes_its_report(smoke_onnx: Path, tmp_path: Path) -> None:
    import typer

    app = typer.Typer()
    app.command()(main)
    out = tmp_path / "cb.json"
    args = ["--model", str(smoke_onnx), "--batches", "1,3", "--runs", "3", "--warmup", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    (model,) = report["models"]
    batches = [r["batch"] for r in model["rows"]]
    assert set(batches) >= {1, 3, model["request_batch"]}
    assert all(r["p50_ms_per_chunk"] > 0 for r in model["rows"])
    base = next(r for r in model["rows"] if r["batch"] == model["request_batch"])
    assert base["vs_request_batch"] == 1.0
    assert "| batch |" in result.output
