"""Benchmark the diarization systems side by side, in one run, on this machine.

For every system (``baseline`` always included):

* model forward latency (ONNX, batch 1, one intra-op thread, process pinned to one core):
  P50/P99 over ``--runs`` calls after warm-up, on the chunk length the model uses;
* DER (pyannote.metrics, overlap scored) at collar 0 and 0.25 on the held-out simulated test
  conversations and on the ami-debug test meetings;
* end-to-end real-time factor on one thread (decode + features + model + clustering + stitching);
* wall time and peak memory (max RSS of a fresh process) for diarizing one long file (default 1 h,
  made by concatenating test conversations).

Usage: ``python benchmarks/diarization.py --systems baseline,fast-cnn [--long-minutes 60]``.
Writes ``reports/benchmarks/diarization.json`` and prints markdown tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, pin_threads, time_calls

REPO = Path(__file__).resolve().parent.parent


def forward_latency(system_name: str, runs: int, warmup: int) -> dict[str, Any] | None:
    """Batch-1 ONNX forward latency of a neural system on its own chunk length."""
    import numpy as np

    from flywheel.systems import get_system

    system = get_system(system_name, threads=1)
    segmenter = getattr(system, "backend", None)
    if segmenter is None or not hasattr(segmenter, "metadata"):
        return None
    meta = segmenter.metadata
    from flywheel.features import model_input

    audio = (np.random.default_rng(0).standard_normal(int(round(meta.chunk_s * 16000))) * 0.1).astype(
        np.float32
    )
    x = model_input(audio, meta.features)[None]  # the model's real input for one chunk
    stats = time_calls(lambda: segmenter(x), runs, warmup)
    stats.update(chunk_s=meta.chunk_s, input_shape=list(x.shape), model=str(system.model_path))
    return stats


def long_file(minutes: float, test_set: Path, out: Path) -> Path:
    """Concatenate test conversations (repeating them) into one ``minutes``-long WAV."""
    import numpy as np

    from flywheel.audio import SAMPLE_RATE, load_audio, write_audio

    if out.exists():
        return out
    parts, total, need = [], 0, int(minutes * 60 * SAMPLE_RATE)
    files = sorted(test_set.glob("*.wav"))
    while total < need:
        for f in files:
            x = load_audio(f)
            parts.append(x)
            total += len(x)
            if total >= need:
                break
    write_audio(out, np.concatenate(parts)[:need])
    return out


def long_run(system_name: str, path: Path) -> dict[str, Any]:
    """Diarize ``path`` in a fresh pinned process; returns wall time, RTF and peak RSS."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(REPO)!r})
from benchmarks.common import peak_rss_mb, pin_threads
pin_threads(0)
from flywheel.audio import load_audio
from flywheel.systems import get_system
system = get_system({system_name!r})
t0 = time.perf_counter()
waveform = load_audio({str(path)!r})
annotation = system.diarize(waveform, uri="long")
elapsed = time.perf_counter() - t0
print(json.dumps({{"seconds": elapsed, "audio_seconds": len(waveform) / 16000,
                  "speakers": len(annotation.labels()),
                  "peak_rss_mb": peak_rss_mb()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["real_time_factor"] = result["seconds"] / result["audio_seconds"]
    return result


def main(
    systems_csv: str = typer.Option(
        "baseline,fast-cnn", "--systems", help="Comma-separated systems to compare (baseline always runs)."
    ),
    test_set: Path = typer.Option(Path("data/conversations/full/test"), help="Held-out simulated test set."),
    ami_test: Path = typer.Option(Path("data/ami-debug/test"), help="Real meetings test set."),
    runs: int = typer.Option(2000, help="Timed forward calls per model (after warm-up)."),
    warmup: int = typer.Option(200, help="Untimed warm-up calls."),
    long_minutes: float = typer.Option(60.0, help="Length of the long file for RTF/memory (0 = skip)."),
    out: Path = typer.Option(Path("reports/benchmarks/diarization.json"), help="JSON report path."),
) -> None:
    """Latency, DER, real-time factor and peak memory of each system, side by side."""
    pin_threads(0)
    from experiments.evaluate import evaluate_system
    from flywheel.systems import get_system

    systems = [s.strip() for s in systems_csv.split(",") if s.strip()]
    if "baseline" not in systems:
        systems = ["baseline", *systems]
    report: dict[str, Any] = {"machine": machine(), "systems": {}}
    for name in systems:
        entry: dict[str, Any] = {}
        typer.echo(f"== {name}")
        latency = forward_latency(name, runs, warmup) if name != "baseline" else None
        if latency:
            entry["forward"] = latency
            typer.echo(
                f"forward (batch 1, 1 thread, {latency['chunk_s']} s chunk): "
                f"P50 {latency['p50_ms']:.2f} ms  P99 {latency['p99_ms']:.2f} ms over {runs} runs"
            )
        system = get_system(name)
        for label, path in (("test", test_set), ("ami_test", ami_test)):
            if not path.exists():
                typer.echo(f"{label}: {path} missing (build it with `make data-full`)")
                continue
            rep = evaluate_system(
                system, path, REPO / "reports" / "benchmarks" / name / label, progress=False
            )
            entry[label] = {
                "der_collar_0": rep["total"]["collar_0"]["der"],
                "der_collar_0.25": rep["total"]["collar_0.25"]["der"],
                "breakdown_collar_0": rep["total"]["collar_0"],
                "real_time_factor": rep["real_time_factor"],
                "files": len(rep["files"]),
            }
            typer.echo(
                f"{label}: DER {100 * entry[label]['der_collar_0']:.2f}% (collar 0), "
                f"{100 * entry[label]['der_collar_0.25']:.2f}% (collar 0.25), "
                f"RTF {rep['real_time_factor']:.4f}"
            )
        if long_minutes > 0 and test_set.exists():
            path = long_file(
                long_minutes, test_set, REPO / "reports" / "benchmarks" / f"long_{long_minutes:g}min.wav"
            )
            entry["long_file"] = long_run(name, path)
            lf = entry["long_file"]
            typer.echo(
                f"{long_minutes:g} min file: {lf['seconds']:.1f} s (RTF {lf['real_time_factor']:.4f}), "
                f"peak RSS {lf['peak_rss_mb']:.0f} MB"
            )
        report["systems"][name] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    typer.echo("\n" + markdown(report))
    typer.echo(f"\nreport: {out}")


def markdown(report: dict[str, Any]) -> str:
    """The README table."""
    rows = [
        "| system | forward P50 / P99 (ms) | DER test c=0 | DER test c=0.25 | DER ami-debug test c=0 "
        "| RTF (1 thread) | 1 h file: time / peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in report["systems"].items():
        fwd = f"{e['forward']['p50_ms']:.2f} / {e['forward']['p99_ms']:.2f}" if "forward" in e else "-"
        t = e.get("test", {})
        a = e.get("ami_test", {})
        lf = e.get("long_file")
        long_cell = f"{lf['seconds']:.1f} s / {lf['peak_rss_mb']:.0f} MB" if lf else "-"
        rows.append(
            f"| {name} | {fwd} | {100 * t.get('der_collar_0', float('nan')):.2f}% "
            f"| {100 * t.get('der_collar_0.25', float('nan')):.2f}% "
            f"| {100 * a.get('der_collar_0', float('nan')):.2f}% "
            f"| {lf['real_time_factor'] if lf else t.get('real_time_factor', float('nan')):.4f} "
            f"| {long_cell} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    typer.run(main)
