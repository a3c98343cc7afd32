"""Kaldi-compatible log mel filterbank in numpy: the input of the CAM++ speaker-embedding model.

CAM++ (3D-Speaker) was trained on ``torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80,
dither=0)``: 25 ms frames every 10 ms without edge padding (``snip_edges``), per-frame DC removal,
pre-emphasis 0.97, a Povey window, a 512-point power spectrum and 80 triangular mel bins between
20 Hz and Nyquist, then ``log(max(energy, eps))``. This module reproduces it without torch so the
teacher runs with onnxruntime alone; ``tests/flywheel/test_kaldi_fbank.py`` checks it against
torchaudio in the teacher environment.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from flywheel.audio import SAMPLE_RATE

FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
N_FFT = 512
NUM_MEL_BINS = 80
LOW_FREQ = 20.0
PREEMPHASIS = 0.97
EPSILON = float(np.finfo(np.float32).eps)


def num_fbank_frames(num_samples: int) -> int:
    """Frames Kaldi computes for ``num_samples`` with ``snip_edges`` (0 when shorter than one frame)."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


@lru_cache(maxsize=1)
def _povey_window() -> np.ndarray:
    n = np.arange(FRAME_LENGTH)
    return ((0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME_LENGTH - 1))) ** 0.85).astype(np.float32)


def _mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


@lru_cache(maxsize=1)
def kaldi_mel_banks() -> np.ndarray:
    """``(80, 257)`` Kaldi mel filter weights over the power-spectrum bins (the Nyquist bin is 0)."""
    nyquist = SAMPLE_RATE / 2
    mel_low, mel_high = _mel(LOW_FREQ), _mel(nyquist)
    delta = (mel_high - mel_low) / (NUM_MEL_BINS + 1)
    bins = np.arange(NUM_MEL_BINS)[:, None]
    left, centre, right = mel_low + bins * delta, mel_low + (bins + 1) * delta, mel_low + (bins + 2) * delta
    fft_mel = _mel(SAMPLE_RATE / N_FFT * np.arange(N_FFT // 2))[None, :]
    up = (fft_mel - left) / (centre - left)
    down = (right - fft_mel) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)


def kaldi_fbank(waveform: np.ndarray, block_frames: int = 4000) -> np.ndarray:
    """``(frames, 80)`` float32 log mel energies of a 16 kHz mono waveform, as Kaldi computes them
    (``block_frames`` at a time, so an hour of audio never holds all its spectra at once)."""
    x = np.asarray(waveform, dtype=np.float32)
    n = num_fbank_frames(len(x))
    out = np.zeros((n, NUM_MEL_BINS), dtype=np.float32)
    for f0 in range(0, n, block_frames):
        out[f0 : f0 + block_frames] = _fbank_block(x, f0, min(n, f0 + block_frames))
    return out


def _fbank_block(x: np.ndarray, first: int, last: int) -> np.ndarray:
    idx = np.arange(FRAME_LENGTH)[None, :] + FRAME_SHIFT * np.arange(first, last)[:, None]
    frames = x[idx].astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= PREEMPHASIS * frames[:, :-1].copy()
    frames[:, 0] *= 1.0 - PREEMPHASIS
    frames *= _povey_window()
    power = np.abs(np.fft.rfft(frames, n=N_FFT, axis=1)) ** 2
    energies = power.astype(np.float32) @ kaldi_mel_banks().T
    return np.log(np.maximum(energies, EPSILON)).astype(np.float32)
