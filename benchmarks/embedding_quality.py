"""How good are a neural system's local speakers, before any clustering? Two diagnoses on a dev set.

* **Slot purity**: of the frames where a local speaker (a slot of one chunk) is active and the
  reference has exactly one speaker, the share that belongs to the slot's majority speaker. An impure
  slot mixes two voices: no clustering can fix it (it is confusion even with oracle clustering).
* **Embedding quality by solo speech**: local speakers are binned by how much they speak alone in
  their chunk (the frames their embedding is pooled from); per bin, the equal error rate of
  same-vs-different-speaker pairs within a recording (cosine, recording mean removed, as the served
  refinement does) and the share of local speakers whose nearest true-speaker centroid (mean of the
  other local speakers of that speaker, leave-one-out) is their own speaker.

Slots are labelled with :func:`benchmarks.oracle_clustering.oracle_assignment`. Writes
``embedding_quality.json`` and a chart of both curves to ``--out-dir``.

Usage: ``python benchmarks/embedding_quality.py [--model-path M] [--step 1.25] [--dev-set D]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import typer
from tqdm import tqdm

from benchmarks.oracle_clustering import oracle_assignment, reference_frames
from flywheel.audio import load_audio
from flywheel.clustering import unit_rows
from flywheel.systems.neural import LocalResults
from flywheel.testset import TestItem, iter_test_set

DEFAULT_BINS = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 12.0)  # seconds of solo speech in the chunk
DEFAULT_OUT = Path("reports/benchmarks/embedding_quality")


def slot_purity(item: TestItem, local: LocalResults, frame_s: float) -> tuple[int, int]:
    """``(pure, total)`` frames over all slots: frames where a slot is active and the reference has
    exactly one speaker, and how many of them belong to that slot's majority speaker."""
    ref = reference_frames(item.reference, local.num_frames, frame_s)
    chunks, frames, slots = local.activity.shape
    pure = total = 0
    for c in range(chunks):
        window = ref[local.chunk_frames[c] : local.chunk_frames[c] + frames]
        solo = window.sum(axis=1) == 1
        for k in range(slots):
            active = local.activity[c, : len(window), k].astype(bool) & solo
            if active.any():
                counts = window[active].sum(axis=0)
                pure += int(counts.max())
                total += int(active.sum())
    return pure, total


def equal_error_rate(same: np.ndarray, different: np.ndarray) -> float:
    """EER of similarity scores (higher = more alike); NaN when either side is empty."""
    if not len(same) or not len(different):
        return float("nan")
    thresholds = np.unique(np.concatenate([same, different]))
    miss = np.searchsorted(np.sort(same), thresholds, side="left") / len(same)  # same scored below
    false_accept = 1.0 - np.searchsorted(np.sort(different), thresholds, side="left") / len(different)
    i = int(np.argmin(np.abs(miss - false_accept)))
    return float((miss[i] + false_accept[i]) / 2)


@dataclass
class BinStats:
    """Accumulated pairs and nearest-centroid hits of one solo-speech bin."""

    same: list[np.ndarray] = field(default_factory=list)
    different: list[np.ndarray] = field(default_factory=list)
    hits: int = 0
    slots: int = 0


def add_recording(
    bins: list[BinStats], edges: np.ndarray, embeddings: np.ndarray, seconds: np.ndarray, truth: np.ndarray
) -> None:
    """Add one recording's local speakers (unit embeddings, solo seconds, true speaker) to ``bins``."""
    if len(truth) < 2:
        return
    emb = unit_rows(embeddings - embeddings.mean(axis=0))  # recording mean removed, as served
    which = np.digitize(seconds, edges) - 1
    upper = np.triu_indices(len(truth), 1)
    sims = (emb @ emb.T)[upper]
    same = truth[upper[0]] == truth[upper[1]]
    for b, stats in enumerate(bins):
        pair = (which[upper[0]] == b) & (which[upper[1]] == b)
        stats.same.append(sims[pair & same])
        stats.different.append(sims[pair & ~same])
    for i in range(len(truth)):
        if not 0 <= which[i] < len(bins):
            continue
        others = np.arange(len(truth)) != i
        ids = np.unique(truth[others])
        centroids = unit_rows(np.stack([emb[others & (truth == s)].mean(axis=0) for s in ids]))
        bins[which[i]].hits += int(ids[int(np.argmax(centroids @ emb[i]))] == truth[i])
        bins[which[i]].slots += 1


def main(
    system_name: str = typer.Option(
        "fast-cnn", "--system", help="Neural system (fast-cnn, distilhubert, teacher)."
    ),
    model_path: Path = typer.Option(None, help="ONNX model (default: the release model)."),
    dev_set: Path = typer.Option(Path("data/conversations/full/dev"), help="Dev folder (wav + rttm)."),
    step: float = typer.Option(None, help="Chunk step in seconds (default: params.yaml)."),
    bins: str = typer.Option(",".join(map(str, DEFAULT_BINS)), help="Solo-speech bin edges, seconds."),
    out_dir: Path = typer.Option(DEFAULT_OUT, help="Where embedding_quality.json and the chart go."),
) -> None:
    """Print slot purity and, per solo-speech bin, within-recording EER and nearest-centroid accuracy."""
    from experiments.plots import quality_by_duration_chart
    from flywheel.systems import get_system

    system = get_system(system_name, model_path=model_path, step_s=step)
    edges = np.array([float(x) for x in bins.split(",")])
    stats = [BinStats() for _ in range(len(edges) - 1)]
    pure = total = 0
    items = list(iter_test_set(dev_set))
    if not items:
        raise typer.BadParameter(f"no wav + rttm pairs in {dev_set}", param_hint="--dev-set")
    for item in tqdm(items, desc="local speakers", unit="file"):
        local = system.prepare(load_audio(item.audio_path))
        p, t = slot_purity(item, local, system.frame_s)
        pure, total = pure + p, total + t
        truth = oracle_assignment(item, local, system.frame_s).slots
        seconds = local.single_frames * system.frame_s
        keep = (truth >= 0) & (seconds >= edges[0])
        add_recording(stats, edges, local.embeddings[keep], seconds[keep], truth[keep])
    rows = []
    for b, s in enumerate(stats):
        rows.append(
            {
                "solo_s": [float(edges[b]), float(edges[b + 1])],
                "local_speakers": s.slots,
                "eer": equal_error_rate(np.concatenate(s.same or [[]]), np.concatenate(s.different or [[]])),
                "nearest_centroid_accuracy": s.hits / s.slots if s.slots else float("nan"),
            }
        )
    purity = pure / total if total else float("nan")
    typer.echo(f"{system.model_path} (step {system.params.step_s} s) on {dev_set}: slot purity {purity:.1%}")
    typer.echo(f"{'solo speech':>13s}  {'slots':>6s}  {'EER':>6s}  {'nearest centroid':>16s}")
    for row in rows:
        low, high = row["solo_s"]
        typer.echo(
            f"{low:5.1f}-{high:4.1f} s  {row['local_speakers']:6d}  {row['eer']:6.1%}  "
            f"{row['nearest_centroid_accuracy']:16.1%}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "model": str(system.model_path),
        "step_s": system.params.step_s,
        "dev_set": str(dev_set),
        "slot_purity": purity,
        "bins": rows,
    }
    (out_dir / "embedding_quality.json").write_text(json.dumps(report, indent=2))
    chart = quality_by_duration_chart(rows, out_dir / "quality_by_solo_speech.png")
    typer.echo(f"wrote {out_dir / 'embedding_quality.json'} and {chart}")


if __name__ == "__main__":
    typer.run(main)
