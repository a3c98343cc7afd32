"""Benchmark the diarization systems side by side, in one run, on this machine.

For every system (``baseline`` always included):

* model forward latency (ONNX, batch 1, one intra-op thread, process pinned to one core):
  P50/P99 over ``--runs`` calls after warm-up, on the chunk length the model uses;
* DER (pyannote.metrics, overlap scored) at collar 0 and 0.25, with miss / false alarm / confusion,
  on every set of ``--sets``: the real-voice sets first (``test-real``, ``confirm-real``), the real
  ami-debug meetings, then the simulated test set, which is *in-distribution* for the arms (same
  simulator and kinds of voices as their training) and labelled so;
* end-to-end real-time factor on one thread (decode + features + model + clustering + stitching),
  on the first set;
* wall time and peak memory (max RSS of a fresh process) for diarizing one long file (default 1 h,
  made by concatenating test conversations).

Usage: ``python benchmarks/diarization.py --systems baseline,senko,pyannote,teacher,fast-cnn``.
Writes ``reports/benchmarks/diarization.json`` and prints markdown tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from benchmarks.common import machine, pin_threads, time_calls

REPO = Path(__file__).resolve().parent.parent


def forward_latency(system_name: str, runs: int, warmup: int) -> dict[str, Any] | None:
    """Batch-1 ONNX forward latency of a neural system on its own chunk length."""
    import numpy as np

    from flywheel.systems import get_system

    system = get_system(system_name, threads=1)
    segmenter = getattr(system, "backend", None)
    if segmenter is None or not hasattr(segmenter, "metadata"):
        return teacher_latency(segmenter, runs, warmup) if hasattr(segmenter, "segmentation") else None
    meta = segmenter.metadata
    from flywheel.features import model_input

    audio = (np.random.default_rng(0).standard_normal(int(round(meta.chunk_s * 16000))) * 0.1).astype(
        np.float32
    )
    x = model_input(audio, meta.features)[None]  # the model's real input for one chunk
    stats = time_calls(lambda: segmenter(x), runs, warmup)
    stats.update(chunk_s=meta.chunk_s, input_shape=list(x.shape), model=str(system.model_path))
    return stats


def teacher_latency(backend: Any, runs: int, warmup: int) -> dict[str, Any]:
    """Batch-1 forward latency of the teacher: segmentation-3.0 on a 10 s chunk, plus CAM++ on one
    1.5 s window (its dense-window unit)."""
    import numpy as np

    from flywheel.kaldi_fbank import kaldi_fbank

    rng = np.random.default_rng(0)
    chunk = (rng.standard_normal((1, int(backend.chunk_s * 16000))) * 0.1).astype(np.float32)
    stats = time_calls(lambda: backend.segmentation.run(None, {"waveform": chunk}), runs, warmup)
    window = kaldi_fbank(chunk[0, :24000])[None]
    emb = time_calls(lambda: backend.embed_batch(window), runs, warmup)
    stats.update(
        chunk_s=backend.chunk_s,
        input_shape=list(chunk.shape),
        model="segmentation-3.0 + CAM++",
        campplus_window_1_5s={k: v for k, v in emb.items() if k.endswith("_ms")},
    )
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
import json, time
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


DEFAULT_SETS = (
    "test-real=data/real/test-real,confirm-real=data/real/confirm-real,"
    "ami-test=data/ami-debug/test,ami-dev=data/ami-debug/development,"
    "sim-test (in-distribution)=data/conversations/full/test"
)


def parse_sets(text: str) -> dict[str, Path]:
    """``"name=path,name=path"`` -> ordered ``{name: path}``."""
    sets = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, path = part.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected name=path, got {part!r}")
        sets[name.strip()] = Path(path.strip())
    return sets


def score(system: Any, name: str, label: str, path: Path) -> dict[str, Any]:
    """DER (collar 0 and 0.25, with its parts) and RTF of ``system`` on one set."""
    from experiments.evaluate import evaluate_system

    slug = label.split(" ")[0]
    rep = evaluate_system(system, path, REPO / "reports" / "benchmarks" / name / slug, progress=False)
    c0 = rep["total"]["collar_0"]
    return {
        "der_collar_0": c0["der"],
        "der_collar_0.25": rep["total"]["collar_0.25"]["der"],
        "miss": c0["missed_rate"],
        "false_alarm": c0["false_alarm_rate"],
        "confusion": c0["confusion_rate"],
        "breakdown_collar_0": c0,
        "real_time_factor": rep["real_time_factor"],
        "files": len(rep["files"]),
    }


def main(
    systems_csv: str = typer.Option(
        "baseline,fast-cnn", "--systems", help="Comma-separated systems to compare (baseline always runs)."
    ),
    sets_csv: str = typer.Option(
        DEFAULT_SETS, "--sets", help="name=folder pairs, comma-separated, scored in this order."
    ),
    runs: int = typer.Option(2000, help="Timed forward calls per model (after warm-up)."),
    warmup: int = typer.Option(200, help="Untimed warm-up calls."),
    long_minutes: float = typer.Option(60.0, help="Length of the long file for RTF/memory (0 = skip)."),
    long_source: Path = typer.Option(
        Path("data/real/test-real"), help="Conversations concatenated into the long file."
    ),
    out: Path = typer.Option(Path("reports/benchmarks/diarization.json"), help="JSON report path."),
) -> None:
    """Latency, DER on every set, real-time factor and peak memory of each system, side by side."""
    pin_threads(0)
    from flywheel.systems import get_system

    systems = [s.strip() for s in systems_csv.split(",") if s.strip()]
    if "baseline" not in systems:
        systems = ["baseline", *systems]
    sets = parse_sets(sets_csv)
    report: dict[str, Any] = {
        "machine": machine(),
        "sets": {k: str(v) for k, v in sets.items()},
        "systems": {},
    }
    for name in systems:
        entry: dict[str, Any] = {"sets": {}}
        typer.echo(f"== {name}")
        latency = (
            forward_latency(name, runs, warmup) if name not in ("baseline", "senko", "pyannote") else None
        )
        if latency:
            entry["forward"] = latency
            typer.echo(
                f"forward (batch 1, 1 thread, {latency['chunk_s']} s chunk): "
                f"P50 {latency['p50_ms']:.2f} ms  P99 {latency['p99_ms']:.2f} ms over {runs} runs"
            )
        system = get_system(name)
        for label, path in sets.items():
            if not path.exists():
                typer.echo(f"{label}: {path} missing (build it with `dvc repro`)")
                continue
            res = entry["sets"][label] = score(system, name, label, path)
            typer.echo(
                f"{label}: DER {100 * res['der_collar_0']:.2f}% (collar 0; miss {100 * res['miss']:.2f}, "
                f"FA {100 * res['false_alarm']:.2f}, conf {100 * res['confusion']:.2f}), "
                f"{100 * res['der_collar_0.25']:.2f}% (collar 0.25), RTF {res['real_time_factor']:.4f}"
            )
        if hasattr(system, "close"):
            system.close()
        if long_minutes > 0 and long_source.exists():
            path = long_file(
                long_minutes, long_source, REPO / "reports" / "benchmarks" / f"long_{long_minutes:g}min.wav"
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
    """The README tables: DER per set (collar 0, then 0.25 in brackets), then speed."""
    sets = list(report.get("sets", {}))
    rows = [
        "| system | " + " | ".join(f"{s} DER c0 (c0.25)" for s in sets) + " |",
        "|---|" + "---|" * len(sets),
    ]
    for name, e in report["systems"].items():
        cells = []
        for s in sets:
            r = e.get("sets", {}).get(s)
            cells.append(f"{100 * r['der_collar_0']:.1f} % ({100 * r['der_collar_0.25']:.1f})" if r else "-")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows += [
        "",
        "| system | forward P50 / P99 (ms) | RTF (1 thread) | long file: time / peak RSS |",
        "|---|---|---|---|",
    ]
    for name, e in report["systems"].items():
        fwd = f"{e['forward']['p50_ms']:.2f} / {e['forward']['p99_ms']:.2f}" if "forward" in e else "-"
        first = next(iter(e.get("sets", {}).values()), {})
        lf = e.get("long_file")
        long_cell = f"{lf['seconds']:.1f} s / {lf['peak_rss_mb']:.0f} MB" if lf else "-"
        rows.append(f"| {name} | {fwd} | {first.get('real_time_factor', float('nan')):.4f} | {long_cell} |")
    return "\n".join(rows)


if __name__ == "__main__":
    typer.run(main)
