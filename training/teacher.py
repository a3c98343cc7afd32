"""Teacher speaker vectors for embedding distillation (resemblyzer d-vectors of inventory speakers).

The student's speaker embeddings are trained with AAM softmax over the training speakers, which only
asks them to tell *those* speakers apart. Distillation adds a target with a geometry learned on many
more voices: each training speaker's mean resemblyzer d-vector (pretrained GE2E encoder, shipped in
the ``resemblyzer`` wheel). Vectors are centred over the speakers before use, because raw d-vectors
all live in the positive orthant (ReLU) while the student's embeddings are centred.

On disk: ``data/teacher/<profile>.npz`` with ``speakers`` (names) and ``vectors`` ``(N, 256)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipelines.inventory import Inventory

WINDOW_S = 1.6  # resemblyzer's partial utterance
HOP_S = 0.8


def speaker_windows(speech: list[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    """1.6 s windows at 0.8 s hop over the utterance's speech span (one window if shorter)."""
    start = speech[0][0] if speech else 0.0
    end = speech[-1][1] if speech else duration
    if end - start <= WINDOW_S:
        return [(start, max(end, start + 0.1))]
    starts = np.arange(start, end - WINDOW_S + 1e-6, HOP_S)
    return [(float(s), float(s) + WINDOW_S) for s in starts]


def compute_teacher_vectors(
    inventory: Inventory, split: str = "train", max_utterances: int = 8
) -> tuple[list[str], np.ndarray]:
    """Mean L2-normalised resemblyzer d-vector of each ``split`` speaker (up to ``max_utterances`` each)."""
    from flywheel.systems.resemblyzer_encoder import ResemblyzerEncoder

    encoder = ResemblyzerEncoder(num_threads=1, normalize_dbfs=-30.0)
    groups = inventory.by_speaker(split)
    speakers = sorted(groups)
    vectors = np.zeros((len(speakers), ResemblyzerEncoder.dim), dtype=np.float32)
    for i, spk in enumerate(tqdm(speakers, desc="teacher d-vectors", unit="speaker")):
        utts = sorted(groups[spk], key=lambda u: u.utt_id)[:max_utterances]
        embs = [
            encoder.embed_windows(u.load(inventory.root), speaker_windows(u.speech, u.duration)) for u in utts
        ]
        mean = np.concatenate(embs).mean(axis=0)
        vectors[i] = mean / max(float(np.linalg.norm(mean)), 1e-8)
    return speakers, vectors


def save_teacher_vectors(path: Path, speakers: list[str], vectors: np.ndarray) -> None:
    """Write ``speakers`` and ``vectors`` to ``path`` (npz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, speakers=np.array(speakers), vectors=vectors.astype(np.float32))


def load_teacher_targets(path: Path, speaker_index: dict[str, int]) -> np.ndarray:
    """Centred, L2-normalised teacher vectors ordered like ``speaker_index`` (training speaker ids).

    Raises ``KeyError`` when a training speaker has no teacher vector (stale teacher file).
    """
    data = np.load(path)
    table = dict(zip(data["speakers"].tolist(), data["vectors"], strict=True))
    missing = [s for s in speaker_index if s not in table]
    if missing:
        raise KeyError(
            f"{path}: no teacher vector for {len(missing)} speakers (e.g. {missing[:3]}); rebuild it"
        )
    out = np.zeros((len(speaker_index), data["vectors"].shape[1]), dtype=np.float32)
    for spk, idx in speaker_index.items():
        out[idx] = table[spk]
    out -= out.mean(axis=0, keepdims=True)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)
