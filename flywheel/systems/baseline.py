"""The ``baseline`` diarization system: Silero VAD + resemblyzer d-vectors + agglomerative clustering.

A real offline peer built only from pretrained weights shipped in PyPI wheels (silero-vad: MIT,
resemblyzer: Apache-2.0); nothing is trained in this project. Defaults live in ``params.yaml``
under ``systems.baseline``; the clustering threshold is tuned by ``experiments/tune.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from pyannote.core import Annotation

from flywheel.clustering import agglomerative_cluster
from flywheel.segments import annotation_from_turns
from flywheel.systems.resemblyzer_encoder import ResemblyzerEncoder, gain_for_rms
from flywheel.vad import SAMPLE_RATE, Region, SileroVAD

FRAME_S = 0.01  # output resolution: segment boundaries fall on 10 ms frames


@dataclass
class BaselineConfig:
    """Every knob of :class:`BaselineSystem` (mirrors ``params.yaml: systems.baseline``)."""

    threshold: float = 0.3  # cosine distance at which the dendrogram is cut
    window_s: float = 1.5
    step_s: float = 0.75
    linkage: str = "average"
    min_cluster_size: int = 2  # clusters of fewer windows are merged into the nearest one
    max_speakers: int | None = None
    loudness: str = "file"  # "file": one gain per file, "window": per window, "none"
    target_dbfs: float = -30.0  # resemblyzer's input level (raised to, never lowered)
    vad_threshold: float = 0.25
    vad_neg_threshold: float | None = None  # None: vad_threshold - 0.15
    vad_min_speech_s: float = 0.25
    vad_min_silence_s: float = 0.3
    vad_pad_s: float = 0.1
    batch_size: int = 64
    num_threads: int | None = 1

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None, **overrides: Any) -> BaselineConfig:
        """Defaults from ``params.yaml`` (``systems.baseline``, nested ``vad:`` keys become ``vad_*``),
        then ``overrides`` (``None`` values are ignored)."""
        if params is None:
            from flywheel.config import load_params

            try:
                params = load_params()
            except FileNotFoundError:
                params = {}
        section = dict(((params or {}).get("systems") or {}).get("baseline") or {})
        for key, value in (section.pop("vad", None) or {}).items():
            section[f"vad_{key}"] = value
        section.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise TypeError(f"unknown baseline option(s) {unknown}; known: {sorted(known)}")
        return cls(**section)


@dataclass
class PreparedAudio:
    """Everything :meth:`BaselineSystem.prepare` computes once per file, before clustering."""

    duration: float
    regions: list[Region]
    windows: np.ndarray  # (n, 2) start/end seconds, sorted by start
    window_region: np.ndarray  # (n,) index into ``regions``
    embeddings: np.ndarray  # (n, 256), L2-normalised
    extra: dict[str, Any] = field(default_factory=dict)


def sliding_windows(
    regions: list[Region], window_s: float, step_s: float, duration: float
) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(n, 2)`` covering every speech region, and the region index of each window.

    A region longer than ``window_s`` gets windows every ``step_s`` plus one aligned on its end;
    a shorter one gets a single window centred on it (shifted to stay inside the audio, and cut
    to the audio when the file itself is shorter than a window).
    """
    windows: list[tuple[float, float]] = []
    owner: list[int] = []
    for r, (start, end) in enumerate(regions):
        if end - start <= window_s:
            lo = min(max((start + end - window_s) / 2, 0.0), max(duration - window_s, 0.0))
            windows.append((lo, min(lo + window_s, duration)))
            owner.append(r)
            continue
        n = int(np.floor((end - start - window_s) / step_s + 1e-9)) + 1
        starts = [start + k * step_s for k in range(n)]
        if starts[-1] + window_s < end - 1e-6:
            starts.append(end - window_s)
        windows.extend((s, s + window_s) for s in starts)
        owner.extend([r] * len(starts))
    return np.asarray(windows, dtype=np.float64).reshape(-1, 2), np.asarray(owner, dtype=np.int64)


def label_regions(
    regions: list[Region], windows: np.ndarray, window_region: np.ndarray, labels: np.ndarray
) -> list[tuple[float, float, int]]:
    """Speaker turns: each 10 ms frame of a region takes the label of its nearest window centre.

    Boundaries between two windows of a region fall half-way between their centres (rounded to
    10 ms); consecutive pieces with the same label are merged.
    """
    turns: list[tuple[float, float, int]] = []
    centres = windows.mean(axis=1) if len(windows) else np.zeros(0)
    for r, (start, end) in enumerate(regions):
        idx = np.flatnonzero(window_region == r)
        if idx.size == 0:
            continue
        idx = idx[np.argsort(centres[idx], kind="stable")]
        cuts = np.round((centres[idx][:-1] + centres[idx][1:]) / 2 / FRAME_S) * FRAME_S
        edges = np.concatenate([[start], np.clip(cuts, start, end), [end]])
        for k, i in enumerate(idx):
            s, e, lab = float(edges[k]), float(edges[k + 1]), int(labels[i])
            if e <= s:
                continue
            if turns and turns[-1][2] == lab and abs(turns[-1][1] - s) < 1e-9:
                turns[-1] = (turns[-1][0], e, lab)
            else:
                turns.append((s, e, lab))
    return turns


class BaselineSystem:
    """Silero VAD -> resemblyzer d-vectors on sliding windows -> agglomerative clustering.

    Pipeline: speech regions from the VAD; windows of ``window_s`` every ``step_s`` inside each
    region (a short region gets one window centred on it); one d-vector per window (batched, so
    hour-long audio runs in bounded memory); average-linkage clustering on cosine distance cut at
    ``threshold`` (automatic speaker count, optionally capped by ``max_speakers``); every speech
    frame takes the speaker of the nearest window centre; labels ``SPEAKER_00, SPEAKER_01, ...``.

    Known limitation: exactly one speaker per frame, **no overlapped speech** is ever output, so
    overlap in the reference counts as missed speech; speaker changes are located only to about
    ``step_s / 2``.

    Keyword options override ``params.yaml: systems.baseline`` (see :class:`BaselineConfig`).
    ``diarize`` is ``cluster(prepare(waveform))``; threshold tuning calls ``prepare`` once per file
    and ``cluster`` once per threshold.
    """

    name = "baseline"

    def __init__(self, params: dict[str, Any] | None = None, **options: Any) -> None:
        self.config = BaselineConfig.from_params(params, **options)
        if self.config.loudness not in ("file", "window", "none"):
            raise ValueError(f"loudness must be 'file', 'window' or 'none', got {self.config.loudness!r}")
        self.vad = SileroVAD(num_threads=self.config.num_threads or 1)
        self.encoder = ResemblyzerEncoder(
            batch_size=self.config.batch_size,
            num_threads=self.config.num_threads,
            normalize_dbfs=self.config.target_dbfs if self.config.loudness == "window" else None,
        )

    @property
    def threshold(self) -> float:
        """The clustering threshold used by :meth:`diarize`."""
        return self.config.threshold

    def prepare(self, waveform: np.ndarray) -> PreparedAudio:
        """VAD, windows and embeddings of ``waveform`` (16 kHz mono float32): all but the clustering."""
        cfg = self.config
        wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
        duration = wav.size / SAMPLE_RATE
        regions = self.vad.speech_regions(
            wav,
            threshold=cfg.vad_threshold,
            neg_threshold=cfg.vad_neg_threshold,
            min_speech_s=cfg.vad_min_speech_s,
            min_silence_s=cfg.vad_min_silence_s,
            pad_s=cfg.vad_pad_s,
        )
        windows, owner = sliding_windows(regions, cfg.window_s, cfg.step_s, duration)
        gain = self._file_gain(wav, regions) if cfg.loudness == "file" else 1.0
        embeddings = self.encoder.embed_windows(wav, [tuple(w) for w in windows], gain=gain)
        return PreparedAudio(duration, regions, windows, owner, embeddings, extra={"gain": gain})

    def _file_gain(self, wav: np.ndarray, regions: list[Region]) -> float:
        """One gain raising the RMS of the speech regions to ``target_dbfs`` (never lowering it)."""
        energy, count = 0.0, 0
        for start, end in regions:
            seg = wav[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
            energy += float(np.dot(seg.astype(np.float64), seg))
            count += seg.size
        if count == 0:
            return 1.0
        return gain_for_rms(float(np.sqrt(energy / count)), self.config.target_dbfs)

    def cluster(
        self,
        prepared: PreparedAudio,
        threshold: float | None = None,
        uri: str = "audio",
        num_speakers: int | None = None,
    ) -> Annotation:
        """Cluster the prepared embeddings at ``threshold`` (default: the configured one), or into
        ``num_speakers`` clusters when the caller knows the count."""
        cfg = self.config
        labels = agglomerative_cluster(
            prepared.embeddings,
            threshold=cfg.threshold if threshold is None else threshold,
            linkage=cfg.linkage,
            metric="cosine",
            min_cluster_size=cfg.min_cluster_size,
            max_speakers=num_speakers or cfg.max_speakers,
            min_speakers=num_speakers or 1,
        )
        turns = label_regions(prepared.regions, prepared.windows, prepared.window_region, labels)
        return annotation_from_turns(((s, e, f"SPEAKER_{lab:02d}") for s, e, lab in turns), uri=uri)

    def diarize(
        self, waveform: np.ndarray, uri: str = "audio", num_speakers: int | None = None
    ) -> Annotation:
        """Who spoke when in ``waveform`` (16 kHz mono float32); an empty annotation if no speech.
        ``num_speakers``: the number of speakers when known (default: estimated)."""
        return self.cluster(self.prepare(waveform), uri=uri, num_speakers=num_speakers)
