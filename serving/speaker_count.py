"""A caller-stated speaker count (``?num_speakers=N``): N speakers when the audio has speech for them,
otherwise the answer says why it has fewer.

The pipeline clusters the embeddings of local speakers that talk alone long enough
(``min_embedding_s``); on a short clip that is often one of them, so clustering alone can find one
speaker where the model heard two distinct voices in the same window. Two active local speakers of
one chunk are different people by construction, so when fewer than N clusters come out, the extra
local speakers that had to share a cluster with another speaker of their own chunk become speakers
of their own (clustered among themselves), up to N. If that still falls short, or stitching leaves
a speaker without a turn, the response's ``warnings`` say so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flywheel.audio import SAMPLE_RATE
from flywheel.clustering import agglomerative_cluster, unit_rows
from flywheel.systems.neural import SpeakerAssignment


def split_shared_slots(
    assignment: np.ndarray,
    active: np.ndarray,
    activity: np.ndarray,
    embeddings: np.ndarray,
    k: int,
    wanted: int,
    threshold: float,
) -> tuple[np.ndarray, int]:
    """Give local speakers that share a global speaker with another slot of their chunk speakers of
    their own, up to ``wanted`` in all.

    Args:
        assignment: ``(C, 3)`` global speaker per slot (``-1``: inactive), from the clustering.
        active: ``(C, 3)`` slots with speech.
        activity: ``(C, T, 3)`` 0/1 local activity (the busiest slot of a shared speaker keeps it).
        embeddings: ``(C, 3, D)`` local-speaker embeddings.
        k: speakers in ``assignment``; wanted: the caller's count; threshold: clustering threshold.
    Returns:
        The new assignment and speaker count (unchanged when no slot shares).
    """
    frames = activity.sum(axis=1)  # (C, 3) active frames per slot
    extra: list[tuple[int, int]] = []
    for c in range(assignment.shape[0]):
        for speaker in set(assignment[c][active[c]].tolist()):
            slots = [s for s in np.flatnonzero(active[c]) if assignment[c, s] == speaker]
            if len(slots) > 1:
                keep = max(slots, key=lambda s: frames[c, s])
                extra += [(c, s) for s in slots if s != keep]
    missing = min(wanted - k, len(extra))
    if missing <= 0:
        return assignment, k
    emb = unit_rows(np.stack([embeddings[c, s] for c, s in extra]))
    if missing == 1:
        labels = np.zeros(len(extra), dtype=np.int64)
    else:
        labels = agglomerative_cluster(emb, threshold, max_speakers=missing, min_speakers=missing)
    out = assignment.copy()
    for (c, s), label in zip(extra, labels, strict=True):
        out[c, s] = k + int(label)
    return out, k + int(labels.max()) + 1


def diarize_with_count(system: Any, samples: np.ndarray, num_speakers: int | None) -> tuple[Any, list[str]]:
    """``(annotation, warnings)`` of ``samples`` with ``system`` (a ``NeuralDiarizer``); ``warnings``
    explain a result with fewer speakers than ``num_speakers`` (empty otherwise)."""
    if num_speakers is None or not hasattr(system, "assign"):
        return system.diarize(samples, uri="audio", num_speakers=num_speakers), []
    local = system.prepare(samples)
    threshold = system.params.threshold
    assignment = system.assign(local, threshold, num_speakers)
    k = assignment.k
    if 0 < k < num_speakers:
        active, _ = system.slot_masks(local)
        slots, k = split_shared_slots(
            assignment.slots, active, local.activity, local.embeddings, k, num_speakers, threshold
        )
        # the split speakers have no dense windows: no window labels, so no solo override undoes them
        assignment = SpeakerAssignment(slots, k)
    annotation = system.stitch(local, assignment, uri="audio")
    found = len(annotation.labels())
    if found >= num_speakers:
        return annotation, []
    duration = len(samples) / SAMPLE_RATE
    if k == 0:
        why = "the model detected no speech"
    elif k < num_speakers:
        why = (
            f"the model heard only {k} distinct voice(s) in these {duration:.1f} s (a speaker is told "
            f"apart when they talk alone for {system.params.min_embedding_s:g} s or alongside another)"
        )
    else:
        why = (
            f"{k - found} of the {k} speakers kept no turn after stitching (too little speech, or "
            "always under another speaker)"
        )
    return annotation, [f"num_speakers={num_speakers} was asked for; {found} found: {why}"]
