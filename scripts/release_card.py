"""Write ``models/release/<name>.json`` (the release model card) from the benchmark report.

The registry bootstrap reads it for the version's tags (``der_gate``, latency), so a fresh clone
registers the release model with the numbers measured for it, not with made-up ones. The card also
carries the pipeline settings the model file carries (``pipeline``: what it is served with; stamp
them with ``scripts/stamp_pipeline.py``).

    python scripts/release_card.py fast-cnn [--report reports/benchmarks/diarization.json]
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import typer

from flywheel.onnx_model import OnnxSegmenter

REPO = Path(__file__).resolve().parent.parent


def main(
    name: str = typer.Argument(..., help="Model name (fast-cnn or distilhubert)."),
    report: Path = typer.Option(REPO / "reports/benchmarks/diarization.json", help="Benchmark JSON."),
    gate_set: str = typer.Option(
        "confirm-real", help="Benchmark set whose DER is the card's der_gate (the promotion gate set)."
    ),
) -> None:
    """Copy the measured numbers of ``name`` into its release card."""
    bench = json.loads(report.read_text())
    entry = bench["systems"][name]
    sets = entry["sets"]
    onnx = REPO / "models" / "release" / f"{name}.onnx"
    card = {
        "der_gate": sets[gate_set]["der_collar_0"],
        "gate_set": bench["sets"][gate_set],
        "der_collar_0.25": sets[gate_set]["der_collar_0.25"],
        "der_test_real": sets.get("test-real", {}).get("der_collar_0"),
        "der_ami_debug_test": sets.get("ami-test", {}).get("der_collar_0"),
        "latency_p50_ms": entry["forward"]["p50_ms"],
        "latency_p99_ms": entry["forward"]["p99_ms"],
        "real_time_factor": entry.get("long_file", {}).get("real_time_factor"),
        "onnx_sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(),
        "machine": bench["machine"]["cpu"],
        "pipeline": OnnxSegmenter(onnx).metadata.pipeline,
    }
    out = onnx.with_suffix(".json")
    out.write_text(json.dumps(card, indent=2) + "\n")
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
