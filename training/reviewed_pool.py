"""Teacher targets for the reviewed recordings: the reviewed dataset as one distillation-pool shard.

Each reviewed item (``data/reviewed-set``, :mod:`pipelines.reviewed_dataset`) is cropped to its UEM
spans (only there are the reviewer's turns a reference); every whole 10 s window of a span becomes
two 5 s chunks with the reviewer's turns as exact labels, segmentation-3.0's posteriors and one
CAM++ embedding per local speaker (:meth:`training.distill_pool.PoolBuilder.chunks`, audio as it
is: no background mixed in). The shard (``shard-000``) is what :class:`training.distill.PoolChunks`
reads, so a distillation recipe whose ``pool`` is ``distill/reviewed`` trains on it. DVC stage
``reviewed-pool`` (``flywheel retrain pool``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pyannote.core import Annotation, Segment

from flywheel.audio import SAMPLE_RATE, load_audio
from flywheel.testset import iter_test_set
from training.data import ChunkConfig
from training.distill_pool import WINDOW_S, PoolBuilder, write_shard

SHARD = "shard-000"
POOL_MANIFEST = "pool.json"


def crop_reference(reference: Annotation, span: Segment) -> Annotation:
    """The turns of ``reference`` inside ``span``, with times from the span's start."""
    cropped = Annotation(uri=reference.uri)
    for seg, track, label in reference.crop(span, mode="intersection").itertracks(yield_label=True):
        cropped[Segment(seg.start - span.start, seg.end - span.start), track] = label
    return cropped


def reviewed_spans(dataset_dir: Path) -> Iterator[tuple[str, np.ndarray, Annotation]]:
    """``(item_id, waveform, reference)`` of every reviewed span of the set (times from the span's
    first sample), in item order; spans shorter than one 10 s teacher window are skipped."""
    for item in iter_test_set(dataset_dir):
        audio = load_audio(item.audio_path)
        for span in item.uem.support():
            a, b = int(round(span.start * SAMPLE_RATE)), min(len(audio), int(round(span.end * SAMPLE_RATE)))
            if (b - a) / SAMPLE_RATE < WINDOW_S:
                continue
            yield (
                item.uri,
                audio[a:b],
                crop_reference(item.reference, Segment(a / SAMPLE_RATE, b / SAMPLE_RATE)),
            )


def build_set_pool(
    dataset_dir: Path,
    out_dir: Path,
    chunk: ChunkConfig,
    seed: int,
    provenance: dict[str, Any],
    threads: int = 1,
) -> dict[str, Any]:
    """Write ``out_dir/shard-000`` (and ``pool.json``) from the UEM spans of an evaluation-set folder,
    its RTTM turns as the exact labels; ``provenance`` (``source`` at least) goes into the shard's
    ``info.json``. Returns the shard info.

    Raises:
        ValueError: no span is at least 10 s long (nothing to train on).
    """
    # chunks() without an rng takes the audio as it is: no inventory, simulator or background bank
    builder = PoolBuilder(chunk, seed, threads=threads)
    spans: list[dict[str, Any]] = []

    def pieces() -> Iterator[dict[str, list[np.ndarray]]]:
        for item_id, waveform, reference in reviewed_spans(dataset_dir):
            piece = builder.chunks(waveform, reference)
            spans.append(
                {"item_id": item_id, "seconds": len(waveform) / SAMPLE_RATE, "chunks": len(piece["audio"])}
            )
            yield piece

    if out_dir.exists():
        shutil.rmtree(out_dir)
    try:
        info = write_shard(pieces(), out_dir / SHARD, chunk, {**provenance, "spans": spans})
    except ValueError as err:
        raise ValueError(
            f"{dataset_dir}: no {provenance['source']} span of at least {WINDOW_S:g} s, "
            f"nothing to train on ({err})"
        ) from None
    manifest = {"source": str(dataset_dir), "items": len({s["item_id"] for s in spans}), "shards": [info]}
    (out_dir / POOL_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return info


def build_reviewed_pool(
    dataset_dir: Path, out_dir: Path, chunk: ChunkConfig, seed: int, threads: int = 1
) -> dict[str, Any]:
    """Write ``out_dir/shard-000`` (and ``pool.json``) from the reviewed set; returns the shard info.

    Raises:
        ValueError: no reviewed span is at least 10 s long (nothing to train on).
    """
    return build_set_pool(dataset_dir, out_dir, chunk, seed, {"source": "reviewed"}, threads=threads)
