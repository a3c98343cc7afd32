"""Full diarization with a segmentation+embedding model (Fast CNN or DistilHuBERT), any length.

1. sliding chunks (``chunk_s`` long, every ``step_s``), log-mel features, one batched model call
   per ``batch_size`` chunks -> per chunk: powerset activity of 3 local speakers + 3 embeddings;
2. local speakers with enough single-speaker speech are clustered (agglomerative, cosine, threshold
   tuned on dev: automatic speaker count); clusters holding too little speech are dissolved, and the
   cut is refined by k-means after removing the recording's mean embedding (what all its speakers
   share: room, channel, noise);
3. every active local speaker is assigned to a global speaker, at most one slot per speaker per chunk
   (Hungarian assignment on cosine similarity to the cluster centroids);
4. stitching (``flywheel.stitching``) averages overlapping chunks and keeps overlap: per frame, the
   local speakers' activity probabilities (the powerset marginals, ``stitching: soft``) or their 0/1
   decisions (``hard``) are averaged into a score per global speaker and a speaker count, both are
   smoothed over ``smoothing_s``, and the ``count`` best-scoring speakers are kept; turns and gaps
   shorter than ``min_duration_on`` / ``min_duration_off`` are dropped / filled.

Memory is bounded: per chunk only the 0/1 activity, the activity probabilities (float16) and 3
embeddings are kept, and clustering reduces very many embeddings first (``flywheel.clustering``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
from pyannote.core import Annotation
from scipy.optimize import linear_sum_assignment

from flywheel.audio import SAMPLE_RATE
from flywheel.clustering import (
    agglomerative_cluster,
    centre_embeddings,
    dissolve_small_clusters,
    refine_centred,
    unit_rows,
)
from flywheel.features import FeatureConfig, limit_blas_threads, model_inputs
from flywheel.stitching import aggregate, binarize, smooth, to_annotation

# features (B, n_mels, T) -> (log-probs (B, T', 7), embeddings (B, 3, D))
Backend = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# powerset class -> active local speakers (mirrors training/models/powerset.py, without torch)
POWERSET = np.array(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=np.uint8
)
STITCHING_MODES = ("soft", "hard")
# settings the pipeline no longer has, with the one value a model or record may still carry for each:
# what the pipeline now always does. Models exported before their removal (the release cards and
# ONNX metadata, gate records) store them; that value is ignored, any other is refused.
# chunk_weighting: "hann" (chunk centres over edges) lost to "uniform" on dev and confirm
# (docs/experiments.md) and was removed after commit b8457ab.
RETIRED_SETTINGS = {"chunk_weighting": "uniform"}


def without_retired_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` less the :data:`RETIRED_SETTINGS` that hold the value the pipeline now always uses.

    Raises:
        ValueError: a retired setting holds another value (the pipeline can no longer run it).
    """
    for key, kept in RETIRED_SETTINGS.items():
        if key in settings and settings[key] != kept:
            raise ValueError(
                f"{key}={settings[key]!r} is no longer supported: only {kept!r} remains, which is "
                f"what the pipeline always does now (drop the setting or use a commit up to b8457ab)"
            )
    return {k: v for k, v in settings.items() if k not in RETIRED_SETTINGS}


@dataclass
class NeuralParams:
    """Pipeline hyper-parameters (params.yaml: ``systems.<name>``), tuned on dev, not on test."""

    step_s: float = 2.5
    threshold: float = 0.6  # cosine distance for clustering
    min_embedding_s: float = 0.5  # single-speaker speech a local speaker needs to enter clustering
    min_active_s: float = 0.1  # less activity than this: slot ignored
    min_duration_on: float = 0.0
    min_duration_off: float = 0.0
    batch_size: int = 32
    max_speakers: int | None = None
    # clusters with less than this share of the clustered speech join the nearest larger one...
    min_cluster_share: float = 0.0
    # ...unless they hold at least this much of it (seconds of solo speech behind their embeddings,
    # summed over overlapping chunks): a long recording's many speakers each hold a small share
    keep_cluster_s: float = float("inf")
    # k-means rounds after the agglomerative cut, in the recording-centred space (0: none)
    refine_iterations: int = 0
    # what overlapping chunks average: "soft" activity probabilities or "hard" 0/1 decisions
    stitching: str = "soft"
    # moving average over the stitched scores and speaker count, seconds (odd frames; 0: none)
    smoothing_s: float = 0.0

    def __post_init__(self) -> None:
        if self.stitching not in STITCHING_MODES:
            raise ValueError(f"stitching must be one of {STITCHING_MODES}, got {self.stitching!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NeuralParams:
        """The fields named in ``d`` (other keys are ignored; retired settings are checked and
        dropped: :func:`without_retired_settings`)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in without_retired_settings(d).items() if k in names})


@dataclass
class LocalResults:
    """Output of the model over all chunks of one recording (what ``cluster`` needs)."""

    activity: np.ndarray  # (C, T, 3) uint8
    embeddings: np.ndarray  # (C, 3, D)
    single_frames: np.ndarray  # (C, 3) frames where the slot speaks alone
    chunk_frames: np.ndarray  # (C,) first global frame of each chunk
    num_frames: int
    duration: float
    # (C, T, 3) float16 probability that each local speaker is active (None: stitch the 0/1 activity)
    probabilities: np.ndarray | None = None


class SpeakerAssignment(NamedTuple):
    """Who every local speaker is (what ``assign`` gives and ``stitch`` takes).

    ``slots``: ``(C, 3)`` global speaker of each chunk's local slot (``-1``: unused); ``k``: the number
    of global speakers; ``window_labels``: ``(W,)`` the speaker of each dense window, for systems that
    cluster windows rather than slots (the teacher's solo override and the pseudo-labels' confidence
    read them), else ``None``.
    """

    slots: np.ndarray
    k: int
    window_labels: np.ndarray | None = None


class NeuralDiarizer:
    """Diarization pipeline around a model backend; see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        chunk_s: float,
        frame_s: float,
        params: NeuralParams | None = None,
        features: FeatureConfig = FeatureConfig(),
        name: str = "neural",
    ):
        self.backend = backend
        self.chunk_s = chunk_s
        self.frame_s = frame_s
        self.params = params or NeuralParams()
        self.features = features
        self.name = name
        limit_blas_threads(1)

    # -- 1. model over sliding chunks -------------------------------------------------------------
    def chunk_starts(self, num_samples: int) -> np.ndarray:
        """Start sample of every chunk, on output-frame boundaries: the first at 0, the last ending at the
        end of the audio, the others spread evenly in between, never more than ``step_s`` apart (so a
        10 s clip with 5 s chunks and a 2.5 s step takes 3 chunks, not a 4th one 40 ms after the 3rd)."""
        n_chunk = int(round(self.chunk_s * SAMPLE_RATE))
        frame = int(round(self.frame_s * SAMPLE_RATE))
        step = max(frame, int(round(self.params.step_s * SAMPLE_RATE)))
        last = int(np.ceil(max(0, num_samples - n_chunk) / frame)) * frame
        count = int(np.ceil(last / step - 1e-9)) + 1
        starts = np.round(np.linspace(0, last, count) / frame).astype(np.int64) * frame
        return np.unique(starts)

    def prepare(self, waveform: np.ndarray) -> LocalResults:
        """Run the model over all chunks (the expensive part; reused when tuning the threshold)."""
        n_chunk = int(round(self.chunk_s * SAMPLE_RATE))
        duration = len(waveform) / SAMPLE_RATE
        starts = self.chunk_starts(len(waveform))
        activities, probabilities, embeddings = [], [], []
        for b0 in range(0, len(starts), self.params.batch_size):
            batch = starts[b0 : b0 + self.params.batch_size]
            feats = model_inputs(waveform, batch, n_chunk, self.features)  # zeros past the end
            logprobs, emb = self.backend(feats)
            activities.append(POWERSET[logprobs.argmax(axis=-1)])
            probabilities.append(speaker_probabilities(logprobs).astype(np.float16))
            embeddings.append(emb)
        activity = np.concatenate(activities)
        powerset_single = activity.sum(axis=2, keepdims=True) == 1
        single = (activity * powerset_single).sum(axis=1)
        frame_samples = self.frame_s * SAMPLE_RATE
        return LocalResults(
            activity=activity,
            embeddings=np.concatenate(embeddings).astype(np.float32),
            single_frames=single,
            chunk_frames=np.round(starts / frame_samples).astype(np.int64),
            num_frames=int(np.ceil(len(waveform) / frame_samples)),
            duration=duration,
            probabilities=np.concatenate(probabilities),
        )

    # -- 2.-4. clustering, assignment, stitching ----------------------------------------------
    def slot_masks(self, local: LocalResults) -> tuple[np.ndarray, np.ndarray]:
        """``(active, good)``, both ``(C, 3)``: slots with enough activity to be assigned a speaker, and
        the active slots with enough single-speaker speech for their embedding to enter clustering."""
        p = self.params
        active = local.activity.sum(axis=1) * self.frame_s >= p.min_active_s
        good = (local.single_frames * self.frame_s >= p.min_embedding_s) & active
        return active, good

    def assign(
        self, local: LocalResults, threshold: float, num_speakers: int | None = None
    ) -> SpeakerAssignment:
        """Global speaker of every local slot ``(C, 3)`` (``-1`` inactive) and the speaker count.

        ``num_speakers`` (when the caller knows it) replaces the threshold's automatic count.
        """
        p = self.params
        active, good = self.slot_masks(local)
        if not active.any():
            return SpeakerAssignment(np.full(active.shape, -1, dtype=np.int64), 0)
        emb = unit_rows(local.embeddings)
        if good.sum() >= 2:
            labels = agglomerative_cluster(
                emb[good],
                threshold,
                max_speakers=num_speakers or p.max_speakers,
                min_speakers=num_speakers or 1,
            )
        else:
            labels = np.zeros(int(good.sum()), dtype=np.int64)
        if labels.size == 0:  # speech, but nobody talks alone long enough: one speaker
            return SpeakerAssignment(np.where(active, 0, -1).astype(np.int64), 1)
        seconds = local.single_frames[good] * self.frame_s  # how much speech each embedding stands for
        if num_speakers is None:
            labels = dissolve_small_clusters(
                emb[good], labels, seconds, p.min_cluster_share, p.keep_cluster_s
            )
        if p.refine_iterations > 0 and labels.max() > 0:
            labels, centre = refine_centred(emb[good], labels, seconds, p.refine_iterations)
            emb = centre_embeddings(emb, centre)
        k = int(labels.max()) + 1
        centroids = unit_rows(np.stack([emb[good][labels == i].mean(axis=0) for i in range(k)]))
        return SpeakerAssignment(assign_to_centroids(emb, active, centroids), k)

    def cluster(
        self,
        local: LocalResults,
        threshold: float | None = None,
        uri: str = "audio",
        num_speakers: int | None = None,
    ) -> Annotation:
        """Cluster prepared chunks and stitch them into an annotation."""
        threshold = self.params.threshold if threshold is None else threshold
        return self.stitch(local, self.assign(local, threshold, num_speakers), uri)

    def stitch(self, local: LocalResults, assignment: SpeakerAssignment, uri: str = "audio") -> Annotation:
        """Stitch the chunks' local activity into one annotation of ``assignment.k`` global speakers,
        given the global speaker of every local slot (e.g. from :meth:`assign`)."""
        if assignment.k == 0:
            return Annotation(uri=uri)
        return to_annotation(
            self.stitched_frames(local, assignment),
            self.frame_s,
            local.duration,
            uri,
            min_duration_on=self.params.min_duration_on,
            min_duration_off=self.params.min_duration_off,
        )

    def stitched_frames(self, local: LocalResults, assignment: SpeakerAssignment) -> np.ndarray:
        """``(F, k)`` 0/1 activity of the ``k`` global speakers on the frame grid (``k >= 1``): the
        chunks averaged, smoothed, and the expected count of best-scoring speakers kept per frame."""
        soft = self.params.stitching == "soft" and local.probabilities is not None
        activity = local.probabilities.astype(np.float32) if soft else local.activity
        scores, count = aggregate(
            activity, assignment.slots, local.chunk_frames, local.num_frames, assignment.k
        )
        scores, count = smooth(scores, count, self.params.smoothing_s, self.frame_s)
        return binarize(scores, count)

    def diarize(
        self, waveform: np.ndarray, uri: str = "audio", num_speakers: int | None = None
    ) -> Annotation:
        """Who spoke when in ``waveform`` (16 kHz mono float32), overlap included; ``num_speakers``:
        the number of speakers when known (default: estimated)."""
        return self.cluster(self.prepare(waveform), uri=uri, num_speakers=num_speakers)


def speaker_probabilities(logprobs: np.ndarray) -> np.ndarray:
    """``(..., 7)`` powerset log-probabilities -> ``(..., 3)`` probability that each local speaker is
    active (the sum of the probabilities of the powerset classes that contain it)."""
    p = np.exp(logprobs - logprobs.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p @ POWERSET.astype(p.dtype)


def assign_to_centroids(embeddings: np.ndarray, active: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Global speaker of every active local slot: per chunk, the Hungarian assignment of its active
    slots to the ``(k, D)`` unit ``centroids`` on cosine similarity, so two slots of one chunk never
    share a speaker (each takes its most similar centroid when a chunk has more slots than speakers).

    Args:
        embeddings: ``(C, 3, D)`` unit embeddings, in the space of the centroids.
        active: ``(C, 3)`` slots to assign.
        centroids: ``(k, D)`` one unit vector per global speaker.
    Returns:
        ``(C, 3)`` speaker indices, ``-1`` for inactive slots.
    """
    assignment = np.full(active.shape, -1, dtype=np.int64)
    k = len(centroids)
    for c in np.flatnonzero(active.any(axis=1)):
        slots = np.flatnonzero(active[c])
        sim = embeddings[c, slots] @ centroids.T  # (slots, k)
        if len(slots) <= k:
            rows, cols = linear_sum_assignment(-sim)
            assignment[c, slots[rows]] = cols
        else:  # more local speakers than clusters: best cluster each
            assignment[c, slots] = sim.argmax(axis=1)
    return assignment
