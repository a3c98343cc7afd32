"""The acoustic recipe of the real-voice evaluation sets, deliberately unlike the training simulator's.

The training simulator (``pipelines/simulate.py``) gives every speaker a room of its own (an exponential
noise tail), adds coloured noise at 5-25 dB SNR and sometimes an 8 kHz telephone band. A model tuned
on that can learn the simulator. Here, instead:

* **one shared room** per conversation: a sparse set of early reflections (image-source-like delays
  and signs) plus a late tail whose high frequencies decay faster, with a per-speaker distance that
  sets the direct-to-reverberant ratio;
* **structured noise**: mains hum with harmonics, a fan-like band-pass noise and a few decaying
  transients (door, keyboard), at 10-30 dB SNR;
* **a device channel**: a microphone-like band (high-pass 80-250 Hz, low-pass 3.5-7.5 kHz) and a slow
  gain drift (an automatic gain control breathing over seconds);
* optionally a lossy **OGG/Vorbis** round trip.

Everything is drawn from the ``rng`` passed in, so a seed gives the same audio.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, sosfilt

from flywheel.audio import SAMPLE_RATE


@dataclass
class RealRecipe:
    """Ranges the recipe draws from (see the module docstring)."""

    rt60_s: tuple[float, float] = (0.2, 0.7)
    distance: tuple[float, float] = (0.1, 0.7)  # 0: on the microphone, 1: across the room
    snr_db: tuple[float, float] = (10.0, 30.0)
    highpass_hz: tuple[float, float] = (80.0, 250.0)
    lowpass_hz: tuple[float, float] = (3500.0, 7500.0)
    gain_drift_db: float = 4.0
    vorbis_prob: float = 0.3
    level_db: tuple[float, float] = (-8.0, 0.0)


def shared_room(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A room impulse response without its direct path: 6-12 early reflections in the first 40 ms
    (random sign, 1/delay amplitude), then a low-passed exponential tail (-60 dB at ``rt60``)."""
    n = int(rt60 * SAMPLE_RATE)
    rir = np.zeros(n, dtype=np.float64)
    for _ in range(int(rng.integers(6, 13))):
        delay = int(rng.uniform(0.003, 0.04) * SAMPLE_RATE)
        rir[delay] += rng.choice([-1.0, 1.0]) * 0.6 * 0.003 * SAMPLE_RATE / delay
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail = sosfilt(butter(2, float(rng.uniform(2000, 5000)), fs=SAMPLE_RATE, output="sos"), tail)
    tail[: int(0.02 * SAMPLE_RATE)] = 0.0
    rir += 0.5 * tail / (np.sqrt(np.sum(tail**2)) + 1e-9)
    return rir.astype(np.float32)


def place_in_room(track: np.ndarray, room: np.ndarray, distance: float) -> np.ndarray:
    """The direct path plus the room's reverberation, weighted by ``distance`` (0 near, 1 far): the
    direct-to-reverberant ratio runs from about +12 dB (0.1) to 0 dB (0.7)."""
    wet = fftconvolve(track, room)[: len(track)]
    return (track * (1.0 - 0.5 * distance) + wet * (0.2 + 0.8 * distance)).astype(np.float32)


def structured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hum + fan + transients, unit RMS."""
    t = np.arange(n) / SAMPLE_RATE
    mains = float(rng.choice([50.0, 60.0]))
    hum = sum(
        rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.3))
        for k in (1, 2, 3, 5)
    )
    lo = float(rng.uniform(100, 800))
    fan = sosfilt(
        butter(2, [lo, lo * rng.uniform(2, 6)], btype="band", fs=SAMPLE_RATE, output="sos"),
        rng.standard_normal(n),
    )
    fan /= np.sqrt(np.mean(fan**2)) + 1e-12
    clicks = np.zeros(n)
    for _ in range(int(rng.poisson(n / SAMPLE_RATE / 8))):
        i = int(rng.integers(0, max(1, n - 4000)))
        length = int(rng.integers(400, 4000))
        clicks[i : i + length] += rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 5)) * 3
    hum_weight = float(rng.uniform(0.0, 0.7))
    noise = hum_weight * hum / (np.sqrt(np.mean(np.square(hum))) + 1e-12) + fan + clicks
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def device_channel(rng: np.random.Generator, x: np.ndarray, recipe: RealRecipe) -> np.ndarray:
    """Microphone band and a slow gain drift."""
    hp, lp = float(rng.uniform(*recipe.highpass_hz)), float(rng.uniform(*recipe.lowpass_hz))
    y = sosfilt(butter(4, [hp, lp], btype="band", fs=SAMPLE_RATE, output="sos"), x)
    t = np.arange(len(y)) / SAMPLE_RATE
    drift_db = recipe.gain_drift_db * np.sin(2 * np.pi * t / rng.uniform(4.0, 15.0) + rng.uniform(0, 6.3))
    return (y * 10 ** (drift_db / 20)).astype(np.float32)


def vorbis_round_trip(x: np.ndarray) -> np.ndarray:
    """Encode to OGG/Vorbis in memory and decode again (a lossy codec, same length)."""
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="OGG", subtype="VORBIS")
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    out = np.zeros(len(x), dtype=np.float32)
    out[: min(len(x), len(y))] = y[: len(x)]
    return out


def render(
    rng: np.random.Generator, tracks: dict[str, np.ndarray], recipe: RealRecipe
) -> tuple[np.ndarray, dict[str, float | bool]]:
    """Mix per-speaker dry tracks (equal length) into one recording; returns it and what was drawn."""
    n = len(next(iter(tracks.values())))
    rt60 = float(rng.uniform(*recipe.rt60_s))
    room = shared_room(rng, rt60)
    mix = np.zeros(n, dtype=np.float32)
    for track in tracks.values():
        gain = 10 ** (rng.uniform(*recipe.level_db) / 20)
        mix += place_in_room(track * gain, room, float(rng.uniform(*recipe.distance)))
    speech_power = float(np.mean(mix**2)) or 1e-6
    snr = float(rng.uniform(*recipe.snr_db))
    mix += structured_noise(rng, n) * np.sqrt(speech_power / 10 ** (snr / 10))
    mix = device_channel(rng, mix, recipe)
    mix *= 10 ** (rng.uniform(-30.0, -12.0) / 20) / (np.sqrt(np.mean(mix**2)) + 1e-9)
    vorbis = bool(rng.random() < recipe.vorbis_prob)
    if vorbis:
        mix = vorbis_round_trip(mix)
    mix = np.clip(mix, -0.99, 0.99).astype(np.float32)  # after the codec: decoding can overshoot
    return mix, {"rt60_s": round(rt60, 3), "snr_db": round(snr, 2), "vorbis": vorbis}
