"""Is model B really better than model A? Per-file DER on one set, paired bootstrap over the files.

A dev-set gain of a few tenths of a point can be noise: the soup2 candidate gained 0.35 points on the
100-file dev and lost 0.55 on the test split. This script diarizes every file of a set with both
models (same system and pipeline, each with its own clustering threshold, or one model under two
pipeline settings), prints both corpus DERs (collar 0, overlap scored) and turn counts (how many are
flickers under 0.2 s), the difference B - A with its bootstrap interval
(:func:`flywheel.metrics.paired_bootstrap`) and a verdict, and writes a JSON report and a per-file
scatter plot.

Usage: ``python benchmarks/compare_models.py --model-b CANDIDATE.onnx [--threshold-b 0.525]
[--step-b 2.5] [--model-a models/release/fast-cnn.onnx] [--eval-set data/conversations/full/dev]``
(``--eval-set data/conversations/full/confirm``: 200 more conversations of the dev speakers, to
confirm a candidate that dev selected; one model, two pipelines: ``--model-b
models/release/fast-cnn.onnx --pipeline-a stitching=hard``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from pyannote.core import Annotation
from tqdm import tqdm

from benchmarks.common import override_params, parse_overrides
from flywheel.audio import load_audio
from flywheel.metrics import aggregate, der_breakdown, paired_bootstrap
from flywheel.testset import iter_test_set

DEFAULT_OUT = Path("reports/benchmarks/compare_models")
SHORT_TURN_S = 0.2  # turns shorter than this are counted: flickers a reader would not call a turn


def turn_counts(annotation: Annotation) -> tuple[int, int]:
    """``(turns, turns shorter than SHORT_TURN_S)`` of a hypothesis."""
    durations = [segment.duration for segment, _ in annotation.itertracks()]
    return len(durations), int(sum(d < SHORT_TURN_S for d in durations))


def main(
    model_b: Path = typer.Option(None, help="ONNX model to compare (the candidate; default: A's model)."),
    model_a: Path = typer.Option(None, help="ONNX model to compare against (default: the release model)."),
    system_name: str = typer.Option(
        "fast-cnn", "--system", help="Neural system (fast-cnn, distilhubert, teacher)."
    ),
    threshold_a: float = typer.Option(None, help="Clustering threshold for A (default: params.yaml)."),
    threshold_b: float = typer.Option(None, help="Clustering threshold for B (default: params.yaml)."),
    step_a: float = typer.Option(None, help="Chunk step in seconds for A (default: params.yaml)."),
    step_b: float = typer.Option(None, help="Chunk step for B (default: params.yaml; 2.5 for 10 s chunks)."),
    pipeline_a: str = typer.Option(
        "", help="Pipeline overrides for A, key=value,... (e.g. stitching=hard,smoothing_s=0)."
    ),
    pipeline_b: str = typer.Option("", help="Pipeline overrides for B (default: params.yaml as is)."),
    eval_set: Path = typer.Option(Path("data/conversations/full/dev"), help="Folder of wav + rttm (+ uem)."),
    samples: int = typer.Option(2000, min=100, help="Bootstrap resamples."),
    confidence: float = typer.Option(0.95, min=0.5, max=0.999, help="Width of the interval."),
    out_dir: Path = typer.Option(DEFAULT_OUT, help="Where compare.json and per_file.png go."),
) -> None:
    """Print both DERs, B - A with its bootstrap interval and a verdict; write JSON and a plot."""
    from experiments.plots import paired_der_chart
    from flywheel.systems import get_system

    system_a = get_system(system_name, model_path=model_a, threshold=threshold_a, step_s=step_a)
    system_b = get_system(system_name, model_path=model_b or model_a, threshold=threshold_b, step_s=step_b)
    system_a.params = override_params(system_a.params, parse_overrides(pipeline_a))
    system_b.params = override_params(system_b.params, parse_overrides(pipeline_b))
    items = list(iter_test_set(eval_set))
    if not items:
        raise typer.BadParameter(f"no wav + rttm pairs in {eval_set}", param_hint="--eval-set")
    # one model at one step under two pipelines: its outputs are computed once per file
    shared = (system_a.model_path, system_a.params.step_s) == (system_b.model_path, system_b.params.step_s)
    rows_a, rows_b, files = [], [], []
    for item in tqdm(items, desc="compare", unit="file"):
        waveform = load_audio(item.audio_path)
        local_a = system_a.prepare(waveform)
        local_b = local_a if shared else system_b.prepare(waveform)
        hyp_a = system_a.cluster(local_a, uri=item.uri)
        hyp_b = system_b.cluster(local_b, uri=item.uri)
        score_a = der_breakdown(item.reference, hyp_a, item.uem)
        score_b = der_breakdown(item.reference, hyp_b, item.uem)
        rows_a.append(score_a)
        rows_b.append(score_b)
        files.append(
            {"uri": item.uri, "der_a": score_a.der, "der_b": score_b.der, "seconds": score_a.total}
            | dict(zip(("turns_a", "short_turns_a"), turn_counts(hyp_a), strict=True))
            | dict(zip(("turns_b", "short_turns_b"), turn_counts(hyp_b), strict=True))
        )
    diff = paired_bootstrap(rows_a, rows_b, samples=samples, confidence=confidence)
    for side, system, rows in (("a", system_a, rows_a), ("b", system_b, rows_b)):
        turns = sum(f[f"turns_{side}"] for f in files)
        short = sum(f[f"short_turns_{side}"] for f in files)
        typer.echo(
            f"{side.upper()} {system.model_path}: {aggregate(rows).summary()}; "
            f"{turns} turns, {short} under {SHORT_TURN_S} s"
        )
    typer.echo(
        f"B - A: {100 * diff.delta:+.2f} points, {confidence:.0%} interval "
        f"[{100 * diff.low:+.2f}, {100 * diff.high:+.2f}] over {len(items)} files of {eval_set}; "
        f"B lower in {diff.b_better_share:.0%} of {samples} resamples: {diff.verdict()}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "system": system_name,
        "eval_set": str(eval_set),
        "model_a": str(system_a.model_path),
        "model_b": str(system_b.model_path),
        "threshold_a": system_a.params.threshold,
        "threshold_b": system_b.params.threshold,
        "step_a": system_a.params.step_s,
        "step_b": system_b.params.step_s,
        "params_a": dataclasses.asdict(system_a.params),
        "params_b": dataclasses.asdict(system_b.params),
        "difference": {**vars(diff), "delta": diff.delta, "verdict": diff.verdict(), "samples": samples},
        "files": files,
    }
    (out_dir / "compare.json").write_text(json.dumps(report, indent=2))
    chart = paired_der_chart(
        [f["der_a"] for f in files],
        [f["der_b"] for f in files],
        out_dir / "per_file.png",
        label_a=" ".join(filter(None, [system_a.model_path.name, pipeline_a])),
        label_b=" ".join(filter(None, [system_b.model_path.name, pipeline_b])),
    )
    typer.echo(f"wrote {out_dir / 'compare.json'} and {chart}")


if __name__ == "__main__":
    typer.run(main)
