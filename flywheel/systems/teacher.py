"""The teacher: pretrained segmentation-3.0 + CAM++ inside our own pipeline, onnxruntime only.

Per 10 s chunk (every ``step_s``), segmentation-3.0 gives the powerset activity of 3 local speakers
(the same 7 classes as our arms). Who is who across chunks comes from CAM++, in one of two ways
(``clustering``):

* ``windows`` (default): CAM++ embeds dense windows (``window_s`` every ``window_step_s``) of the
  frames where the stitched segmentation hears exactly one speaker; the windows are clustered
  (agglomerative, cosine, automatic count); each local speaker then takes the cluster its own solo
  frames vote for (Hungarian per chunk, so two local speakers of a chunk never share a speaker).
  Dense windows give far more, and more uniform, evidence per speaker than one embedding per chunk.
* ``slots``: each active local speaker is embedded on the fbank frames where it speaks alone and the
  local speakers are clustered, exactly as the arms do (:class:`~flywheel.systems.neural.NeuralDiarizer`).

Either way the end is the arms' soft, overlap-aware stitching and smoothing; the hyper-parameters
(``params.yaml: systems.teacher``) are tuned on dev-real + ami-debug dev.

This is what pseudo-labels logged traffic and what the arms are distilled from; it is served as the
third A/B arm ``teacher``. The two ONNX files come from ``training/teacher_export.py``
(``scripts/setup_teacher.sh``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from scipy.optimize import linear_sum_assignment

from flywheel.audio import SAMPLE_RATE
from flywheel.clustering import (
    agglomerative_cluster,
    dissolve_small_clusters,
    refine_centred,
    spectral_cluster,
    unit_rows,
)
from flywheel.config import REPO_ROOT, load_params
from flywheel.features import FeatureConfig
from flywheel.kaldi_fbank import FRAME_LENGTH, FRAME_SHIFT, kaldi_fbank, num_fbank_frames
from flywheel.onnx_model import METADATA_KEY, session_options
from flywheel.pretrained import CAMPPLUS_ONNX, SEGMENTATION_ONNX, teacher_onnx
from flywheel.systems.neural import (
    POWERSET,
    LocalResults,
    NeuralDiarizer,
    NeuralParams,
    SpeakerAssignment,
)

MIN_EMBED_FRAMES = 20  # fbank frames (0.2 s): CAM++ needs a little context to say anything


def grid_frames_of_fbank(num_fbank: int, frame_samples: int, num_frames: int) -> np.ndarray:
    """The grid frame (``frame_samples`` long, ``num_frames`` of them) holding the centre of each of
    ``num_fbank`` Kaldi fbank frames (frame ``k`` is centred on sample ``k * 160 + 200``)."""
    centres = np.arange(num_fbank) * FRAME_SHIFT + FRAME_LENGTH // 2
    return np.minimum(centres // frame_samples, num_frames - 1)


def onnx_metadata(session: ort.InferenceSession) -> dict[str, Any]:
    """The project's ``flywheel`` metadata of an exported file."""
    return json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])


class TeacherBackend:
    """``waveform chunks (B, 160000) -> (powerset log-probs (B, F, 7), embeddings (B, 3, 192))`` on the
    grid of ``frame_s`` frames starting at each chunk's first sample (``F = ceil(160000 / 270)``)."""

    def __init__(
        self,
        segmentation: str | Path = SEGMENTATION_ONNX,
        embedding: str | Path = CAMPPLUS_ONNX,
        threads: int = 1,
        embed_slots: bool = True,
    ):
        opts = session_options(threads)
        self.segmentation = ort.InferenceSession(
            str(teacher_onnx(Path(segmentation))), opts, providers=["CPUExecutionProvider"]
        )
        self.embedding = ort.InferenceSession(
            str(teacher_onnx(Path(embedding))), opts, providers=["CPUExecutionProvider"]
        )
        self.embed_slots = embed_slots
        meta = onnx_metadata(self.segmentation)
        self.chunk_s = float(meta["chunk_s"])
        self.frame_s = float(meta["frame_s"])
        self.dimension = int(onnx_metadata(self.embedding)["extra"]["dimension"])
        frame = int(round(self.frame_s * SAMPLE_RATE))
        chunk = int(round(self.chunk_s * SAMPLE_RATE))
        self.num_frames = int(np.ceil(chunk / frame))
        # the model's frame i is centred on sample offset + i * frame; our grid frame j on (j + 0.5) frame
        self.shift = int(round((meta["extra"]["frame_centre_offset_samples"] - frame / 2) / frame))
        self.fbank_to_grid = grid_frames_of_fbank(num_fbank_frames(chunk), frame, self.num_frames)

    def align(self, logprobs: np.ndarray) -> np.ndarray:
        """Model frames -> grid frames: shift by the receptive field's centre, pad with edge frames."""
        after = self.num_frames - self.shift - logprobs.shape[1]
        return np.pad(logprobs, ((0, 0), (self.shift, max(0, after)), (0, 0)), mode="edge")[
            :, : self.num_frames
        ]

    def embed(self, fbank: np.ndarray) -> np.ndarray:
        """CAM++ embedding of ``(T, 80)`` fbank frames (mean-normalised here)."""
        return self.embed_batch(fbank[None])[0]

    def embed_batch(self, fbanks: np.ndarray) -> np.ndarray:
        """CAM++ embeddings of ``(B, T, 80)`` equal-length fbank windows (each mean-normalised)."""
        feats = (fbanks - fbanks.mean(axis=1, keepdims=True)).astype(np.float32)
        return self.embedding.run(None, {"fbank": feats})[0]

    def __call__(self, waveforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logprobs = self.align(self.segmentation.run(None, {"waveform": waveforms.astype(np.float32)})[0])
        if not self.embed_slots:
            return logprobs, np.zeros((len(waveforms), 3, self.dimension), dtype=np.float32)
        activity = POWERSET[logprobs.argmax(axis=-1)]  # (B, F, 3)
        solo = activity * (activity.sum(axis=2, keepdims=True) == 1)
        embeddings = np.zeros((len(waveforms), 3, self.dimension), dtype=np.float32)
        for b, chunk in enumerate(waveforms):
            if not activity[b].any():
                continue
            fbank = kaldi_fbank(chunk)
            for s in range(3):
                frames = solo[b, self.fbank_to_grid, s].astype(bool)
                if frames.sum() < MIN_EMBED_FRAMES:
                    frames = activity[b, self.fbank_to_grid, s].astype(bool)
                if frames.sum() >= MIN_EMBED_FRAMES:
                    embeddings[b, s] = self.embed(fbank[frames])
        return logprobs, embeddings


CLUSTERING_MODES = ("windows", "slots")
WINDOW_CLUSTERINGS = ("spectral", "ahc")


@dataclass
class TeacherParams(NeuralParams):
    """:class:`NeuralParams` plus how speakers are found across chunks (see the module docstring)."""

    clustering: str = "windows"
    # how the windows are clustered: "spectral" (eigengap count; ``threshold`` merges close clusters)
    # or "ahc" (average linkage cut at ``threshold``)
    window_clustering: str = "spectral"
    window_s: float = 1.5
    window_step_s: float = 0.75
    min_window_s: float = 0.5  # solo runs shorter than this give no window
    # where the stitched output has one speaker, take the speaker its windows vote for instead of
    # the local speaker's (segmentation's local speakers sometimes drift from one voice to another)
    solo_override: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.clustering not in CLUSTERING_MODES:
            raise ValueError(f"clustering must be one of {CLUSTERING_MODES}, got {self.clustering!r}")
        if self.window_clustering not in WINDOW_CLUSTERINGS:
            raise ValueError(
                f"window_clustering must be one of {WINDOW_CLUSTERINGS}, got {self.window_clustering!r}"
            )


@dataclass
class TeacherLocal(LocalResults):
    """:class:`LocalResults` plus the dense windows: grid frames ``[start, end)`` and CAM++ embeddings."""

    window_frames: np.ndarray | None = None  # (W, 2)
    window_embeddings: np.ndarray | None = None  # (W, D)


def solo_grid_frames(local: LocalResults) -> np.ndarray:
    """Global frames where the chunks covering them hear one speaker on average (count in [0.5, 1.5))."""
    total = np.zeros(local.num_frames)
    cover = np.zeros(local.num_frames)
    frames = local.activity.shape[1]
    for c, f0 in enumerate(local.chunk_frames):
        n = max(0, min(frames, local.num_frames - int(f0)))
        total[f0 : f0 + n] += local.activity[c, :n].sum(axis=1)
        cover[f0 : f0 + n] += 1
    mean = total / np.maximum(cover, 1)
    return (mean >= 0.5) & (mean < 1.5)


def window_spans(solo: np.ndarray, window: int, step: int, min_len: int) -> list[tuple[int, int]]:
    """``[start, end)`` windows of ``window`` frames every ``step`` over the runs of ``solo`` frames
    (runs shorter than ``window`` give one window if at least ``min_len``; the last window of a run
    ends at the run's end)."""
    spans: list[tuple[int, int]] = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], solo.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a < min_len:
            continue
        if b - a <= window:
            spans.append((int(a), int(b)))
            continue
        starts = list(range(int(a), int(b) - window + 1, step))
        if starts[-1] + window < b:
            starts.append(int(b) - window)
        spans.extend((s0, s0 + window) for s0 in starts)
    return spans


class TeacherSystem(NeuralDiarizer):
    """segmentation-3.0 + CAM++ in the project's pipeline (see the module docstring)."""

    def __init__(
        self,
        segmentation_path: str | Path | None = None,
        embedding_path: str | Path | None = None,
        threads: int = 1,
        model_path: str | Path | None = None,
        **overrides: Any,
    ):
        """``model_path`` (what serving passes for every arm) is the segmentation model's path."""
        config = dict(load_params().get("systems", {}).get("teacher", {}))
        config.update({k: v for k, v in overrides.items() if v is not None})
        segmentation_path = segmentation_path or model_path
        seg = Path(segmentation_path or config.get("segmentation_path") or SEGMENTATION_ONNX)
        emb = Path(embedding_path or config.get("embedding_path") or CAMPPLUS_ONNX)
        seg, emb = (p if p.is_absolute() else REPO_ROOT / p for p in (seg, emb))
        params = TeacherParams.from_dict(config)
        backend = TeacherBackend(seg, emb, threads=threads, embed_slots=params.clustering == "slots")
        super().__init__(
            backend, backend.chunk_s, backend.frame_s, params, FeatureConfig(kind="waveform"), "teacher"
        )
        self.backend: TeacherBackend = backend
        self.model_path = seg

    # -- dense windows ----------------------------------------------------------------------------
    def prepare(self, waveform: np.ndarray) -> LocalResults:
        """Segmentation over the chunks, then (``windows`` mode) CAM++ over dense solo windows."""
        local = super().prepare(waveform)
        p: TeacherParams = self.params  # type: ignore[assignment]
        if p.clustering != "windows":
            return local
        fbank = kaldi_fbank(waveform)
        frame = int(round(self.frame_s * SAMPLE_RATE))
        grid_of_fbank = grid_frames_of_fbank(len(fbank), frame, local.num_frames)
        solo = solo_grid_frames(local)[grid_of_fbank] if len(fbank) else np.zeros(0, dtype=bool)
        fps = SAMPLE_RATE / FRAME_SHIFT  # fbank frames per second
        spans = window_spans(
            solo,
            int(round(p.window_s * fps)),
            int(round(p.window_step_s * fps)),
            int(round(p.min_window_s * fps)),
        )
        embeddings = np.zeros((len(spans), self.backend.dimension), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, (a, b) in enumerate(spans):
            by_length.setdefault(b - a, []).append(i)
        for _length, idx in by_length.items():
            for b0 in range(0, len(idx), 32):
                batch = idx[b0 : b0 + 32]
                embeddings[batch] = self.backend.embed_batch(
                    np.stack([fbank[a:b] for a, b in (spans[i] for i in batch)])
                )
        frames = np.array(
            [(grid_of_fbank[a], grid_of_fbank[b - 1] + 1) for a, b in spans], dtype=np.int64
        ).reshape(-1, 2)
        fields = {f: getattr(local, f) for f in LocalResults.__dataclass_fields__}
        return TeacherLocal(**fields, window_frames=frames, window_embeddings=embeddings)

    def assign(
        self, local: LocalResults, threshold: float, num_speakers: int | None = None
    ) -> SpeakerAssignment:
        """``windows`` mode: cluster the windows, then give every local speaker the cluster its frames
        vote for (the window labels travel with the assignment); ``slots`` mode (or no windows): the
        arms' slot clustering."""
        if not isinstance(local, TeacherLocal) or local.window_embeddings is None:
            return super().assign(local, threshold, num_speakers)
        p = self.params
        active, _ = self.slot_masks(local)
        if not active.any():
            return SpeakerAssignment(np.full(active.shape, -1, dtype=np.int64), 0)
        if len(local.window_embeddings) < 2:
            return SpeakerAssignment(np.where(active, 0, -1).astype(np.int64), 1)
        emb = unit_rows(local.window_embeddings)
        if p.window_clustering == "spectral":
            labels = spectral_cluster(emb, threshold, max_speakers=p.max_speakers, num_speakers=num_speakers)
        else:
            labels = agglomerative_cluster(
                emb, threshold, max_speakers=num_speakers or p.max_speakers, min_speakers=num_speakers or 1
            )
        seconds = (local.window_frames[:, 1] - local.window_frames[:, 0]) * self.frame_s
        if num_speakers is None:
            labels = dissolve_small_clusters(emb, labels, seconds, p.min_cluster_share, p.keep_cluster_s)
        if p.refine_iterations > 0 and labels.max() > 0:
            labels, _ = refine_centred(emb, labels, seconds, p.refine_iterations)
        k = int(labels.max()) + 1
        return SpeakerAssignment(vote_assignment(local, active, local.window_frames, labels, k), k, labels)

    def stitched_frames(self, local: LocalResults, assignment: SpeakerAssignment) -> np.ndarray:
        """The arms' stitching; with ``solo_override`` and window labels in the assignment,
        single-speaker frames covered by windows take the speaker the windows vote for."""
        binary = super().stitched_frames(local, assignment)
        labels = assignment.window_labels
        solo_override = self.params.solo_override  # type: ignore[attr-defined]
        if not solo_override or labels is None or not isinstance(local, TeacherLocal):
            return binary
        votes = frame_votes(local.window_frames, labels, assignment.k, local.num_frames)
        single = (binary.sum(axis=1) == 1) & (votes.sum(axis=1) > 0)
        binary[single] = False
        binary[np.flatnonzero(single), votes[single].argmax(axis=1)] = True
        return binary


def frame_votes(window_frames: np.ndarray, labels: np.ndarray, k: int, num_frames: int) -> np.ndarray:
    """``(num_frames, k)``: how many windows of each cluster cover every frame."""
    votes = np.zeros((num_frames + 1, k))
    for (a, b), lab in zip(window_frames, labels, strict=True):
        votes[a:b, lab] += 1.0
    return votes[:num_frames]


def vote_assignment(
    local: LocalResults, active: np.ndarray, window_frames: np.ndarray, labels: np.ndarray, k: int
) -> np.ndarray:
    """Global speaker of every active local slot from the window clusters: per frame, the clusters of
    the windows covering it vote; a slot sums the votes over its solo frames (all its active frames
    if those have none, the nearest voted frame's if still none), and each chunk's slots take
    distinct speakers by Hungarian assignment on those sums."""
    votes = frame_votes(window_frames, labels, k, local.num_frames)
    voted = np.flatnonzero(votes.sum(axis=1) > 0)
    assignment = np.full(active.shape, -1, dtype=np.int64)
    frames = local.activity.shape[1]
    for c in np.flatnonzero(active.any(axis=1)):
        f0 = int(local.chunk_frames[c])
        n = max(0, min(frames, local.num_frames - f0))
        act = local.activity[c, :n]
        solo = act * (act.sum(axis=1, keepdims=True) == 1)
        slots = np.flatnonzero(active[c])
        scores = np.zeros((len(slots), k))
        for i, s in enumerate(slots):
            for mask in (solo[:, s], act[:, s]):
                scores[i] = votes[f0 : f0 + n][mask.astype(bool)].sum(axis=0)
                if scores[i].any():
                    break
            if not scores[i].any() and voted.size:
                where = np.flatnonzero(act[:, s]) + f0
                centre = int(where.mean()) if where.size else f0
                scores[i] = votes[voted[np.abs(voted - centre).argmin()]]
        if len(slots) <= k:
            rows, cols = linear_sum_assignment(-scores)
            assignment[c, slots[rows]] = cols
        else:
            assignment[c, slots] = scores.argmax(axis=1)
    return assignment
