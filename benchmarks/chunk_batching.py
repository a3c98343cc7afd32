"""Would batching across requests make the arms cheaper? The model's cost per chunk by batch size.

A request's chunks already go through the model in one batched call (a 10 s clip at the Fast CNN's
5 s chunks and 1.25 s step is a batch of 5). Batching *across* requests (``serve.batch`` on an arm,
or a shared queue in the ingress) only pays if a bigger batch makes each chunk cheaper. This times
the ONNX forward alone, one thread, process pinned to one core, for each batch size, on real-shaped
inputs (the model's own chunk length and features, random values: the kernels do not care), and
prints the cost per chunk relative to the batch a single 10 s request already makes.

Usage::

    python benchmarks/chunk_batching.py                              # the release arms
    python benchmarks/chunk_batching.py --model models/release/fast-cnn.onnx --batches 1,5,10,20,40

Writes ``reports/benchmarks/chunk_batching.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import typer

from benchmarks.common import machine, pin_threads, time_calls

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = "models/release/fast-cnn.onnx,models/release/distilhubert.onnx"


def request_batch(chunk_s: float, step_s: float, clip_s: float = 10.0) -> int:
    """Chunks of one ``clip_s`` request at this chunk length and step (what one call already batches)."""
    return max(1, math.floor((clip_s - chunk_s) / step_s + 1e-9) + 1) if clip_s > chunk_s else 1


def chunk_input(model: Any, batch: int, seed: int = 0) -> np.ndarray:
    """A model input of ``batch`` chunks of the model's own chunk length (random values)."""
    from flywheel.audio import SAMPLE_RATE
    from flywheel.features import model_inputs

    meta = model.metadata
    chunk = int(round(meta.chunk_s * SAMPLE_RATE))
    wave = np.random.default_rng(seed).normal(0, 0.1, chunk).astype(np.float32)
    one = model_inputs(wave, np.array([0]), chunk, meta.features)
    return np.repeat(one, batch, axis=0)


def per_chunk(path: Path, batches: list[int], runs: int, warmup: int) -> dict[str, Any]:
    """Forward latency per chunk (P50, P99; ms) for each batch size, and for the batch one 10 s
    request makes at the step the model carries."""
    from flywheel.onnx_model import OnnxSegmenter

    model = OnnxSegmenter(path, threads=1)
    step_s = float(model.metadata.pipeline.get("step_s") or model.metadata.chunk_s / 2)
    base = request_batch(model.metadata.chunk_s, step_s)
    sizes = sorted({*batches, base})
    typer.echo(f"timing {path.name} at batches {sizes} ...", err=True)
    rows = []
    for b in sizes:
        x = chunk_input(model, b)
        t = time_calls(lambda x=x: model(x), runs, warmup)
        rows.append({"batch": b, "p50_ms_per_chunk": t["p50_ms"] / b, "p99_ms_per_chunk": t["p99_ms"] / b})
    ref = next((r for r in rows if r["batch"] == base), None)
    for r in rows:
        r["vs_request_batch"] = r["p50_ms_per_chunk"] / ref["p50_ms_per_chunk"] if ref else None
    return {
        "model": str(path),
        "model_type": model.metadata.model_type,
        "chunk_s": model.metadata.chunk_s,
        "step_s": step_s,
        "request_batch": base,
        "rows": rows,
    }


def table(report: dict[str, Any]) -> str:
    """Markdown table of a report."""
    lines = [
        "| model | chunk | batch | P50 ms / chunk | P99 ms / chunk | vs one 10 s request's batch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in report["models"]:
        for r in m["rows"]:
            rel = "-" if r["vs_request_batch"] is None else f"{r['vs_request_batch']:.2f}"
            mark = " (one request)" if r["batch"] == m["request_batch"] else ""
            lines.append(
                f"| {Path(m['model']).name} | {m['chunk_s']} s | {r['batch']}{mark} | "
                f"{r['p50_ms_per_chunk']:.3f} | {r['p99_ms_per_chunk']:.3f} | {rel} |"
            )
    return "\n".join(lines)


def main(
    model: str = typer.Option(DEFAULT_MODELS, help="Comma-separated ONNX files of the arms."),
    batches: str = typer.Option(
        "1,5,10,20,40", help="Comma-separated batch sizes (the request's own batch is added)."
    ),
    runs: int = typer.Option(100, help="Timed forward calls per batch size."),
    warmup: int = typer.Option(10, help="Untimed calls first."),
    cpu: int = typer.Option(0, help="Core to pin the process to."),
    out: Path = typer.Option(REPO / "reports" / "benchmarks" / "chunk_batching.json", help="JSON report."),
) -> None:
    """Forward cost per chunk by batch size, one thread, for each arm's model."""
    pin_threads(cpu)
    sizes = [int(b) for b in batches.split(",")]
    report: dict[str, Any] = {"machine": machine(), "runs": runs, "models": []}
    for path in [Path(p) for p in model.split(",") if p]:
        if not path.exists():
            raise typer.BadParameter(f"no such model file: {path}")
        report["models"].append(per_chunk(path, sizes, runs, warmup))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    typer.echo(table(report))
    m = report["machine"]
    typer.echo(f"\nmachine: {m['cpu']}, pinned to {m['pinned_to']}, load {m['load_average']}; wrote {out}")


if __name__ == "__main__":
    typer.run(main)
