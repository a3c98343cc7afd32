"""Teacher targets for logged traffic: the pseudo-labelled set as one distillation-pool shard.

Each item of ``data/pseudo-set`` (:mod:`pipelines.pseudo_dataset`: logged audio whose teacher
pseudo-label is ``ok`` and confident enough) is one span, the whole file; every whole 10 s window
becomes two 5 s chunks exactly as for the reviewed pool (:func:`training.reviewed_pool.build_set_pool`),
except that the "exact" labels (``labels.npy``) are the **teacher's pseudo-labels**, not a reviewer's
turns: the shard's ``info.json`` says so (``source: pseudo``, ``labels``). The shard (``shard-000``)
is what :class:`training.distill.PoolChunks` reads, so a distillation recipe may list
``distill/pseudo`` in its ``pool``. DVC stage ``pseudo-pool`` (``flywheel retrain pseudo-pool``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.reviewed_dataset import DATASET_INFO
from training.data import ChunkConfig
from training.reviewed_pool import build_set_pool

LABELS = "teacher pseudo-labels (flywheel pseudo-label) as the exact labels: not reviewed by a human"


def build_pseudo_pool(
    dataset_dir: Path, out_dir: Path, chunk: ChunkConfig, seed: int, threads: int = 1
) -> dict[str, Any]:
    """Write ``out_dir/shard-000`` (and ``pool.json``) from the pseudo-labelled set; returns the shard info.

    Raises:
        FileNotFoundError: ``dataset_dir`` is not a pseudo-labelled set (no ``dataset.json``).
        ValueError: no item is at least 10 s long (nothing to train on).
    """
    info_path = dataset_dir / DATASET_INFO
    if not info_path.is_file():
        raise FileNotFoundError(
            f"no {info_path}: snapshot the pseudo-labels first (`flywheel retrain pseudo-dataset`)"
        )
    dataset = json.loads(info_path.read_text())
    provenance = {
        "source": "pseudo",
        "labels": LABELS,
        "min_confidence": dataset.get("min_confidence"),
        "teacher_versions": dataset.get("teacher_versions", []),
    }
    return build_set_pool(dataset_dir, out_dir, chunk, seed, provenance, threads=threads)
