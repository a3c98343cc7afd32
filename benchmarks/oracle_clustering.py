"""Where a neural system's DER comes from: its real clustering vs oracle clustering, on a dev set.

Four rows: the system as served; the same with the true number of speakers given (``num_speakers``:
what the automatic count costs); oracle centroids: every speaker's centroid is the mean of the model's
own embeddings of the local speakers that truly are that speaker, and slots are assigned to them as
served (what the best clustering of these embeddings could reach: the rest is the embeddings'); oracle
clustering, which keeps the model's own local activity but maps every local speaker of every chunk to
the reference speaker it overlaps most, then stitches as usual. The gap between the first and last
rows is the cost of the speaker embeddings + clustering; what the oracle row still misses is
segmentation. A last table splits the segmentation by how many
speakers talk at once: of the time where the reference has 0, 1, 2 or 3+ speakers, the share where the
served system finds 0, 1, 2 or 3+ (e.g. how much two-speaker overlap it detects).

Usage: ``python benchmarks/oracle_clustering.py --system fast-cnn [--model-path M] [--dev-set D]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from pyannote.core import Annotation

from flywheel.audio import load_audio
from flywheel.clustering import centre_embeddings, recording_centre, unit_rows
from flywheel.metrics import aggregate, der_breakdown
from flywheel.systems.neural import NeuralDiarizer, SpeakerAssignment, assign_to_centroids
from flywheel.testset import TestItem, iter_test_set

MAX_COUNT = 3  # the last row and column hold "this many speakers or more"


def speaker_count_table(
    reference: Annotation, hypothesis: Annotation, duration: float, resolution: float = 0.01
) -> np.ndarray:
    """Seconds by (reference, hypothesis) number of simultaneous speakers, ``(4, 4)``, capped at 3+."""
    frames = int(np.ceil(duration / resolution))

    def counts(annotation: Annotation) -> np.ndarray:
        c = np.zeros(frames + 1, dtype=np.int64)
        for seg, _ in annotation.itertracks():
            c[int(round(seg.start / resolution))] += 1
            c[min(frames, int(round(seg.end / resolution)))] -= 1
        return np.minimum(np.cumsum(c)[:frames], MAX_COUNT)

    table = np.zeros((MAX_COUNT + 1, MAX_COUNT + 1))
    np.add.at(table, (counts(reference), counts(hypothesis)), resolution)
    return table


def reference_frames(reference: Annotation, num_frames: int, frame_s: float) -> np.ndarray:
    """``(num_frames, S)`` boolean activity of the reference speakers (sorted labels) on the model's
    frame grid (a frame is active when a turn touches it)."""
    labels = sorted(reference.labels())
    ref = np.zeros((num_frames, len(labels)), dtype=bool)
    for seg, _, label in reference.itertracks(yield_label=True):
        ref[int(seg.start / frame_s) : int(np.ceil(seg.end / frame_s)), labels.index(label)] = True
    return ref


def oracle_assignment(item: TestItem, local, frame_s: float) -> SpeakerAssignment:
    """``(C, 3)`` reference-speaker index of every active local slot (``-1`` inactive), speaker count."""
    ref = reference_frames(item.reference, local.num_frames, frame_s)
    chunks, frames, slots = local.activity.shape
    assignment = np.full((chunks, slots), -1, dtype=np.int64)
    for c in range(chunks):
        window = ref[local.chunk_frames[c] : local.chunk_frames[c] + frames]
        for k in range(slots):
            active = local.activity[c, : len(window), k].astype(bool)
            if active.any():
                assignment[c, k] = int((window & active[:, None]).sum(axis=0).argmax())
    return SpeakerAssignment(assignment, ref.shape[1])


def oracle_centroid_assignment(system: NeuralDiarizer, item: TestItem, local) -> SpeakerAssignment:
    """``(C, 3)`` assignment as served, to centroids built from the truth: each speaker's centroid is
    the mean embedding of the slots that enter clustering (``system.slot_masks``) and truly are that
    speaker (:func:`oracle_assignment`), in the recording-centred space when the system refines there.
    Returns the assignment and the number of centroids (speakers with at least one such slot)."""
    oracle = oracle_assignment(item, local, system.frame_s).slots
    active, good = system.slot_masks(local)
    if not good.any():  # as served: nobody talks alone long enough, one speaker
        return SpeakerAssignment(np.where(active, 0, -1).astype(np.int64), int(active.any()))
    emb = unit_rows(local.embeddings)
    if system.params.refine_iterations > 0:
        seconds = local.single_frames[good] * system.frame_s
        emb = centre_embeddings(emb, recording_centre(emb[good], seconds))
    truth = oracle[good]
    ids = np.unique(truth)
    centroids = unit_rows(np.stack([emb[good][truth == i].mean(axis=0) for i in ids]))
    return SpeakerAssignment(assign_to_centroids(emb, active, centroids), len(ids))


def oracle_window_labels(item: TestItem, local, frame_s: float) -> tuple[np.ndarray, int]:
    """``(W,)`` reference-speaker index of every dense window of a teacher's prepared recording (the
    speaker most active over the window's frames), and the number of reference speakers."""
    ref = reference_frames(item.reference, local.num_frames, frame_s)
    labels = [int(ref[a:b].sum(axis=0).argmax()) for a, b in local.window_frames]
    return np.asarray(labels, dtype=np.int64), ref.shape[1]


def oracle_window_assignment(system: NeuralDiarizer, item: TestItem, local) -> SpeakerAssignment:
    """The teacher's vote assignment with oracle window labels (which the solo override then uses,
    as served)."""
    from flywheel.systems.teacher import vote_assignment

    labels, k = oracle_window_labels(item, local, system.frame_s)
    active, _ = system.slot_masks(local)
    return SpeakerAssignment(vote_assignment(local, active, local.window_frames, labels, k), k, labels)


def main(
    system_name: str = typer.Option(
        "fast-cnn", "--system", help="Neural system (fast-cnn, distilhubert, teacher)."
    ),
    model_path: Path = typer.Option(None, help="ONNX model (default: the release model)."),
    dev_set: Path = typer.Option(Path("data/conversations/full/dev"), help="Dev folder (wav + rttm)."),
    step: float = typer.Option(None, help="Chunk step in seconds (default: params.yaml)."),
) -> None:
    """Print DER with the system's clustering and with oracle clustering (collar 0, overlap scored)."""
    from flywheel.systems import get_system

    system = get_system(system_name, model_path=model_path, step_s=step)
    real, known_count, centroid_rows, oracle, windows = [], [], [], [], []
    table = np.zeros((MAX_COUNT + 1, MAX_COUNT + 1))
    for item in iter_test_set(dev_set):
        local = system.prepare(load_audio(item.audio_path))
        served = system.cluster(local, uri=item.uri)
        real.append(der_breakdown(item.reference, served, item.uem))
        table += speaker_count_table(item.reference, served, local.duration)
        count = len(item.reference.labels())
        hyp = system.cluster(local, uri=item.uri, num_speakers=count)
        known_count.append(der_breakdown(item.reference, hyp, item.uem))
        if getattr(local, "window_frames", None) is None:  # slot embeddings: oracle centroids
            hyp = system.stitch(local, oracle_centroid_assignment(system, item, local), uri=item.uri)
            centroid_rows.append(der_breakdown(item.reference, hyp, item.uem))
        else:  # the teacher's windows (it has no slot embeddings): oracle window labels
            hyp = system.stitch(local, oracle_window_assignment(system, item, local), uri=item.uri)
            windows.append(der_breakdown(item.reference, hyp, item.uem))
        # the slot oracle carries no window labels: stitched without the teacher's solo override
        hyp = system.stitch(local, oracle_assignment(item, local, system.frame_s), uri=item.uri)
        oracle.append(der_breakdown(item.reference, hyp, item.uem))
    rows_by_name = (
        ("system clustering", real),
        ("true speaker count", known_count),
        ("oracle centroids", centroid_rows),
        ("oracle clustering", oracle),
        ("oracle windows", windows),
    )
    for name, rows in rows_by_name:
        if not rows:
            continue
        typer.echo(f"{name:18s} {aggregate(rows).summary()}")
    names = [str(n) for n in range(MAX_COUNT)] + [f"{MAX_COUNT}+"]
    typer.echo("\nspeakers at once: reference (rows) vs served (share of the row's time)")
    typer.echo("ref   seconds  " + "  ".join(f"{'hyp ' + n:>7s}" for n in names))
    for n, row in zip(names, table, strict=True):
        shares = row / max(row.sum(), 1e-9)
        typer.echo(f"{n:3s} {row.sum():9.0f}  " + "  ".join(f"{s:7.1%}" for s in shares))


if __name__ == "__main__":
    typer.run(main)
