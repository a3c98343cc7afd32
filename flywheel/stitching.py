"""From per-chunk local speakers to one recording-level annotation.

Chunks overlap; each local speaker of each chunk has been mapped to a global speaker. Per global
frame, activity scores (0/1 decisions or activity probabilities) are averaged over the chunks
covering it (every frame of a chunk counting alike), the number of simultaneous speakers is
estimated the same way, and the top-``count`` speakers are kept, so overlapped speech survives
stitching.
Optionally both are smoothed over a few frames first, so single-frame flickers do not become turns.
"""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment
from scipy.ndimage import uniform_filter1d


def aggregate(
    activity: np.ndarray,
    assignment: np.ndarray,
    chunk_starts: np.ndarray,
    num_global_frames: int,
    num_speakers: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Average chunk activity into global frames.

    Args:
        activity: ``(C, T, S)`` local activity of each chunk: 0/1 or probabilities in [0, 1].
        assignment: ``(C, S)`` global speaker of each local slot (``-1``: unused slot).
        chunk_starts: ``(C,)`` first global frame of each chunk.
        num_global_frames: frames of the whole recording.
        num_speakers: number of global speakers.
    Returns:
        ``(F, G)`` averaged speaker scores in [0, 1] and ``(F,)`` averaged speaker count.
    """
    c_count, t_frames, s_slots = activity.shape
    scores = np.zeros((num_global_frames, max(num_speakers, 1)), dtype=np.float32)
    count = np.zeros(num_global_frames, dtype=np.float32)
    coverage = np.zeros(num_global_frames, dtype=np.float32)
    for c in range(c_count):
        f0 = int(chunk_starts[c])
        f1 = min(num_global_frames, f0 + t_frames)
        n = f1 - f0
        if n <= 0:
            continue
        coverage[f0:f1] += 1.0
        count[f0:f1] += activity[c, :n].sum(axis=1)
        for s in range(s_slots):
            g = assignment[c, s]
            if g >= 0:
                scores[f0:f1, g] += activity[c, :n, s]
    coverage = np.maximum(coverage, 1e-6)
    return scores / coverage[:, None], count / coverage


def smooth(
    scores: np.ndarray, count: np.ndarray, window_s: float, frame_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Moving average of the ``(F, G)`` speaker scores and the ``(F,)`` speaker count over a centred
    window of ``window_s`` seconds (rounded down to an odd number of frames; under 3 frames: unchanged).
    Edges repeat the first / last frame."""
    frames = int(round(window_s / frame_s))
    frames -= 1 - frames % 2  # odd, so the window is centred
    if frames < 3:
        return scores, count
    return (
        uniform_filter1d(scores, frames, axis=0, mode="nearest"),
        uniform_filter1d(count, frames, mode="nearest"),
    )


def binarize(scores: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Keep, per frame, the ``round(count)`` highest-scoring speakers (with a non-zero score)."""
    k = np.floor(count + 0.5).astype(int)
    order = np.argsort(-scores, axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return (ranks < k[:, None]) & (scores > 0)


def to_annotation(
    binary: np.ndarray,
    frame_s: float,
    duration: float,
    uri: str = "audio",
    min_duration_on: float = 0.0,
    min_duration_off: float = 0.0,
) -> Annotation:
    """``(F, G)`` 0/1 frames -> annotation with labels ``SPEAKER_00..`` (in order of first speech).

    Gaps shorter than ``min_duration_off`` are filled, then turns shorter than ``min_duration_on`` dropped.
    """
    annotation = Annotation(uri=uri)
    firsts = []
    for g in range(binary.shape[1]):
        col = np.concatenate([[False], binary[:, g].astype(bool), [False]])
        edges = np.flatnonzero(np.diff(col.astype(np.int8)))
        turns = [
            [s * frame_s, min(e * frame_s, duration)] for s, e in zip(edges[::2], edges[1::2], strict=True)
        ]
        merged: list[list[float]] = []
        for s, e in turns:
            if merged and s - merged[-1][1] < min_duration_off:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        merged = [t for t in merged if t[1] - t[0] >= max(min_duration_on, 1e-6)]
        if merged:
            firsts.append((merged[0][0], g, merged))
    for rank, (_, _, merged) in enumerate(sorted(firsts)):
        for s, e in merged:
            annotation[Segment(s, e)] = f"SPEAKER_{rank:02d}"
    return annotation
