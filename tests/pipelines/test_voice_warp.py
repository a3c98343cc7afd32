"""Formant warping: a new voice from a recorded one (envelope moved, pitch, length and level kept)."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.audio import SAMPLE_RATE
from pipelines.voice_warp import variant_name, warp_formants


def vowel(f0: float = 120.0, formants: tuple[float, ...] = (700.0, 1200.0, 2600.0), seconds: float = 1.0):
    """A synthetic vowel: harmonics of ``f0`` weighted by resonances at ``formants``."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = np.zeros_like(t)
    for h in range(1, int(7000 / f0)):
        f = h * f0
        gain = sum(1.0 / (1.0 + ((f - fc) / 90.0) ** 2) for fc in formants)
        x += gain * np.sin(2 * np.pi * f * t)
    return (0.1 * x / np.abs(x).max()).astype(np.float32)


def spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mag = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE), mag


def centroid(x: np.ndarray) -> float:
    freqs, mag = spectrum(x)
    return float((freqs * mag).sum() / mag.sum())


def f0(x: np.ndarray) -> float:
    """Pitch from the autocorrelation peak between 60 and 400 Hz."""
    ac = np.correlate(x, x, mode="full")[x.size - 1 :]
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 60
    return SAMPLE_RATE / (lo + int(np.argmax(ac[lo:hi])))


def test_warp_moves_the_formants_and_keeps_pitch_length_and_level() -> None:
    x = vowel()
    up, down = warp_formants(x, 1.14), warp_formants(x, 0.88)
    assert up.shape == x.shape == down.shape and up.dtype == np.float32
    assert centroid(up) > centroid(x) * 1.05 and centroid(down) < centroid(x) * 0.95
    assert abs(f0(up) - f0(x)) < 3 and abs(f0(down) - f0(x)) < 3
    for y in (up, down):
        assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
        assert np.isfinite(y).all()


def test_alpha_one_is_the_identity_and_bad_alpha_is_refused() -> None:
    x = vowel(seconds=0.3)
    assert np.array_equal(warp_formants(x, 1.0), x)
    assert np.array_equal(warp_formants(x[:100], 1.2), x[:100])  # shorter than one frame: unchanged
    with pytest.raises(ValueError, match="alpha"):
        warp_formants(x, 0.0)


def test_variant_names_are_stable() -> None:
    assert variant_name("libri:19", 1.14) == "libri:19~f1.14"
    assert variant_name("libri:19@+500c", 0.88) == "libri:19@+500c~f0.88"
