"""Log-mel features, computed with numpy only and shared exactly by training and inference.

The neural systems never see raw audio: training (``training/data.py``) and the onnxruntime
inference path (``flywheel/systems/neural.py``) both call :func:`log_mel`, so there is one definition of
the model input. Frame ``i`` covers samples ``[i * hop, i * hop + win)`` of the signal padded by
``win // 2`` on the left, i.e. it is centred on ``i * hop``; a signal of ``n`` samples gives
``n // hop`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from flywheel.audio import SAMPLE_RATE


def limit_blas_threads(threads: int = 1) -> None:
    """Pin numpy's BLAS to ``threads`` for the rest of the process.

    The mel projection is a small matrix product; with several OpenBLAS threads on a loaded 2-core
    machine they spin-wait and it gets 10-30x slower. Called by the trainer, its data workers and the
    inference pipeline.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


@dataclass(frozen=True)
class FeatureConfig:
    """Front-end parameters (stored with every exported model)."""

    n_mels: int = 64
    n_fft: int = 512
    win: int = 400  # 25 ms
    hop: int = 160  # 10 ms
    fmin: float = 20.0
    fmax: float = 7600.0
    kind: str = "log_mel"  # model input: "log_mel" (n_mels, frames) or "waveform" (samples,)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Triangular HTK-style mel filters, shape ``(n_mels, n_fft // 2 + 1)``, float32."""
    freqs = np.fft.rfftfreq(cfg.n_fft, 1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(cfg.fmin)), _hz_to_mel(np.array(cfg.fmax)), cfg.n_mels + 2)
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


@lru_cache(maxsize=8)
def _window(win: int, n_fft: int) -> np.ndarray:
    w = np.zeros(n_fft, dtype=np.float32)
    w[:win] = np.hanning(win + 1)[:-1]
    return w


@lru_cache(maxsize=8)
def _mel_projection(cfg: FeatureConfig) -> np.ndarray:
    return np.ascontiguousarray(mel_filterbank(cfg).T)


def num_frames(num_samples: int, cfg: FeatureConfig = FeatureConfig()) -> int:
    """Number of feature frames for a signal of ``num_samples``."""
    return num_samples // cfg.hop


def _frames_log_mel(frames: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel of analysis frames ``(m, win)`` (window applied here): ``(m, n_mels)``, float32."""
    window = _window(cfg.win, cfg.n_fft)[: cfg.win]
    spec = scipy.fft.rfft(frames * window, n=cfg.n_fft, axis=1)
    power = spec.real**2 + spec.imag**2
    return np.log(power @ _mel_projection(cfg) + 1e-6)


def log_mel(
    waveform: np.ndarray, cfg: FeatureConfig = FeatureConfig(), block_frames: int = 6000
) -> np.ndarray:
    """Log-mel spectrogram, shape ``(n_mels, num_frames)``, float32.

    Long signals are processed ``block_frames`` at a time, so memory stays bounded by the output.
    """
    x = np.asarray(waveform, dtype=np.float32)
    n = num_frames(len(x), cfg)
    padded = np.pad(x, (cfg.win // 2, cfg.win))
    frames_all = sliding_window_view(padded, cfg.win)[:: cfg.hop]
    out = np.empty((n, cfg.n_mels), dtype=np.float32)
    for b0 in range(0, n, block_frames):
        b1 = min(n, b0 + block_frames)
        out[b0:b1] = _frames_log_mel(frames_all[b0:b1], cfg)
    return out.T


def chunk_log_mels(
    waveform: np.ndarray, starts: np.ndarray, chunk_samples: int, cfg: FeatureConfig = FeatureConfig()
) -> np.ndarray:
    """``log_mel`` of the chunks ``waveform[s : s + chunk_samples]`` (zeros past the end), stacked:
    ``(len(starts), n_mels, chunk_samples // hop)``.

    Same numbers as calling :func:`log_mel` on each chunk (to float rounding), but overlapping chunks
    share their spectrogram: it is computed once over the span of all chunks, and only the few frames
    whose window crosses a chunk's edge (where ``log_mel`` pads the chunk with zeros) are computed again
    per chunk. Starts must be multiples of ``cfg.hop``; others fall back to one ``log_mel`` per chunk.
    """
    starts = np.asarray(starts, dtype=np.int64)
    hop, win, half = cfg.hop, cfg.win, cfg.win // 2
    n = num_frames(chunk_samples, cfg)

    def piece(a: int, b: int) -> np.ndarray:  # waveform[a:b] as float32, zeros past the end
        out = np.asarray(waveform[a:b], dtype=np.float32)
        return out if len(out) == b - a else np.pad(out, (0, b - a - len(out)))

    if len(starts) == 0:
        return np.zeros((0, cfg.n_mels, n), dtype=np.float32)
    if np.any(starts % hop) or np.any(np.diff(starts) < 0):
        return np.stack([log_mel(piece(int(s), int(s) + chunk_samples), cfg) for s in starts])
    s0 = int(starts[0])
    region = piece(s0, int(starts[-1]) + chunk_samples)
    span = log_mel(region, cfg).T  # (frames, n_mels)
    first = (starts - s0) // hop
    out = span[first[:, None] + np.arange(n)[None, :]]  # (C, n, n_mels)
    # frames whose window reaches outside the chunk: recomputed with the chunk's zero padding
    i = np.arange(n)
    edge = i[(i * hop - half < 0) | (i * hop - half + win > chunk_samples)]
    offsets = edge[:, None] * hop - half + np.arange(win)[None, :]  # (E, win) sample offsets in the chunk
    inside = (offsets >= 0) & (offsets < chunk_samples)
    index = np.clip((starts - s0)[:, None, None] + offsets[None], 0, len(region) - 1)
    frames = np.where(inside[None], region[index], 0.0).astype(np.float32)
    out[:, edge] = _frames_log_mel(frames.reshape(-1, win), cfg).reshape(len(starts), len(edge), -1)
    return np.ascontiguousarray(out.transpose(0, 2, 1))


INPUT_KINDS = ("log_mel", "waveform")


def model_input(waveform: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """What a model is fed for one chunk: its log-mel spectrogram, or the float32 samples themselves.

    The one place training data and the inference path turn audio into model input.
    """
    if cfg.kind == "log_mel":
        return log_mel(waveform, cfg)
    if cfg.kind == "waveform":
        return np.asarray(waveform, dtype=np.float32).copy()
    raise ValueError(f"unknown model input kind {cfg.kind!r}; choose one of {INPUT_KINDS}")


def model_inputs(
    waveform: np.ndarray, starts: np.ndarray, chunk_samples: int, cfg: FeatureConfig = FeatureConfig()
) -> np.ndarray:
    """:func:`model_input` of the chunks ``waveform[s : s + chunk_samples]`` (zeros past the end),
    stacked into one batch; log-mel chunks share their overlapping frames (:func:`chunk_log_mels`)."""
    if cfg.kind == "log_mel":
        return chunk_log_mels(waveform, starts, chunk_samples, cfg)
    batch = np.zeros((len(starts), chunk_samples), dtype=np.float32)
    for row, s in zip(batch, starts, strict=True):
        part = waveform[int(s) : int(s) + chunk_samples]
        row[: len(part)] = part
    return np.stack([model_input(row, cfg) for row in batch])
