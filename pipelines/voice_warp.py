"""New training voices from real ones: shift the formants (vocal-tract length), keep the pitch.

Speaker embeddings only generalise to unseen voices when training has seen many voices; this project
has about 300 real ones. Pitch shifting (``profiles.*.inventory.pitch_shift_cents``) moves pitch and
formants together. This module moves the spectral envelope alone: the log-magnitude spectrum of each
STFT frame is split by cepstral liftering into a smooth envelope (formants, the vocal tract) and a fine
structure (harmonics, the pitch), the envelope is stretched along frequency by ``alpha`` and the two are
put back together with the original phase. ``alpha`` > 1 sounds like a shorter vocal tract (higher
formants), < 1 like a longer one; 0.88 and 1.14 are about the difference between two adult speakers of
one sex, so each warped copy is trained as a speaker of its own (``training.data``).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import istft, stft

from flywheel.audio import SAMPLE_RATE

N_FFT = 512  # 32 ms frames at 16 kHz
HOP = 128
LIFTER = 30  # cepstral coefficients kept for the envelope (formants, not harmonics)


def _envelope(log_mag: np.ndarray, lifter: int) -> np.ndarray:
    """Smooth log-magnitude envelope of each frame ``(bins, frames)`` by cepstral liftering."""
    cepstrum = np.fft.irfft(log_mag, axis=0)
    cepstrum[lifter:-lifter] = 0.0
    return np.fft.rfft(cepstrum, axis=0).real[: log_mag.shape[0]]


def _stretch(values: np.ndarray, alpha: float) -> np.ndarray:
    """``out[k] = values[k / alpha]`` along axis 0 (linear interpolation, edges held)."""
    bins = values.shape[0]
    source = np.clip(np.arange(bins) / alpha, 0, bins - 1)
    lo = np.floor(source).astype(int)
    hi = np.minimum(lo + 1, bins - 1)
    frac = (source - lo)[:, None]
    return values[lo] * (1 - frac) + values[hi] * frac


def warp_formants(samples: np.ndarray, alpha: float, lifter: int = LIFTER) -> np.ndarray:
    """``samples`` (16 kHz mono float32) with its spectral envelope stretched by ``alpha``.

    Same length and RMS as the input; pitch, timing and phase are kept. ``alpha == 1`` returns the
    input unchanged.

    Raises:
        ValueError: ``alpha`` is not positive.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    x = np.asarray(samples, dtype=np.float32)
    if alpha == 1.0 or x.size < N_FFT:
        return x
    _, _, spec = stft(x, fs=SAMPLE_RATE, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary="even")
    log_mag = np.log(np.abs(spec) + 1e-8)
    envelope = _envelope(log_mag, lifter)
    warped = np.exp(log_mag - envelope + _stretch(envelope, alpha)) * np.exp(1j * np.angle(spec))
    _, y = istft(warped, fs=SAMPLE_RATE, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=True)
    y = np.nan_to_num(y[: x.size], nan=0.0, posinf=0.0, neginf=0.0)
    if y.size < x.size:
        y = np.pad(y, (0, x.size - y.size))
    rms_in = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    rms_out = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    return (y * (rms_in / rms_out if rms_out > 0 else 0.0)).astype(np.float32)


def variant_name(speaker: str, alpha: float) -> str:
    """Speaker id of a warped copy: ``libri:19`` at 1.14 -> ``libri:19~f1.14``."""
    return f"{speaker}~f{alpha:g}"
