"""Tight energy-based speech intervals on synthetic clean signals with known speech regions."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.speech_activity import (
    frame_energy_db,
    merge_intervals,
    speech_duration,
    speech_intervals,
    trim_silence,
)

SR = 16_000


def voiced(duration: float, rng: np.random.Generator, f0: float = 140.0) -> np.ndarray:
    """A speech-like burst: harmonics of ``f0`` with a slow amplitude envelope."""
    t = np.arange(int(duration * SR)) / SR
    sig = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 8))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return (0.1 * sig * env).astype(np.float32)


def render(
    segments: list[tuple[float, float]], total: float, noise_db: float | None = -70.0, seed: int = 0
) -> np.ndarray:
    """Speech bursts at ``segments`` (seconds) over optional white noise of ``noise_db`` dBFS."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(total * SR), dtype=np.float32)
    for s, e in segments:
        burst = voiced(e - s, rng, f0=rng.uniform(100, 220))
        x[int(s * SR) : int(s * SR) + len(burst)] += burst
    if noise_db is not None:
        x += (10 ** (noise_db / 20) * rng.standard_normal(len(x))).astype(np.float32)
    return x


def covered(intervals: list[tuple[float, float]], t: float) -> bool:
    return any(s <= t <= e for s, e in intervals)


def test_known_segments_are_found_with_tight_edges() -> None:
    truth = [(0.5, 1.5), (3.0, 3.8)]
    got = speech_intervals(render(truth, 5.0))
    assert len(got) == 2
    for (s, e), (ts, te) in zip(got, truth, strict=True):
        assert abs(s - ts) <= 0.05 and abs(e - te) <= 0.05


def test_short_gaps_are_bridged_long_gaps_split() -> None:
    got = speech_intervals(render([(0.5, 1.5), (1.6, 2.4), (3.0, 3.8)], 4.5))
    assert len(got) == 2  # 0.1 s gap bridged, 0.6 s gap kept
    assert got[0][0] == pytest.approx(0.5, abs=0.05) and got[0][1] == pytest.approx(2.4, abs=0.05)


def test_short_islands_are_dropped() -> None:
    x = render([(0.5, 1.5)], 3.0)
    click = render([(0.0, 0.02)], 0.02, noise_db=None, seed=3)
    x[int(2.5 * SR) : int(2.5 * SR) + len(click)] += click
    got = speech_intervals(x)
    assert len(got) == 1 and got[0][1] < 1.6


@pytest.mark.parametrize("noise_db", [None, -70.0, -45.0])
def test_labels_are_tight_and_complete(noise_db: float | None) -> None:
    """No silence of more than ~0.2 s inside a label, and every speech sample labelled."""
    rng = np.random.default_rng(7)
    for trial in range(5):
        t, truth = 0.3, []
        while t < 8.0:
            dur = rng.uniform(0.2, 1.5)
            truth.append((t, t + dur))
            t += dur + rng.choice([rng.uniform(0.05, 0.15), rng.uniform(0.3, 1.2)])
        x = render(truth, t + 0.5, noise_db=noise_db, seed=trial)
        got = speech_intervals(x)
        for ts, te in truth:  # complete (ignoring the frame-edge tolerance)
            for q in np.linspace(ts + 0.03, te - 0.03, 10):
                assert covered(got, q), (ts, te, got)
        grid = np.arange(0, len(x) / SR, 0.01)
        is_speech = np.array([covered(truth, q) for q in grid])
        for s, e in got:  # tight: longest true silence inside a label
            inside = ~is_speech[(grid >= s) & (grid <= e)]
            longest = max((len(r) for r in "".join("1" if v else "0" for v in inside).split("0")), default=0)
            assert longest * 0.01 <= 0.25, (s, e, longest)


def test_silence_gives_no_intervals() -> None:
    assert speech_intervals(np.zeros(SR, dtype=np.float32)) == []
    assert speech_intervals(render([], 1.0, noise_db=-80.0)) == []
    assert speech_intervals(np.zeros(0, dtype=np.float32)) == []


def test_level_independent() -> None:
    x = render([(0.5, 1.5), (2.5, 3.0)], 3.5)
    assert speech_intervals(x) == speech_intervals(x * 0.05)


def test_trim_silence_keeps_at_most_a_tenth_of_a_second() -> None:
    x = render([(1.0, 2.0), (2.6, 3.2)], 5.0)
    intervals = speech_intervals(x)
    trimmed, shifted = trim_silence(x, intervals)
    dur = len(trimmed) / SR
    assert shifted[0][0] == pytest.approx(0.1, abs=0.002)
    assert dur - shifted[-1][1] == pytest.approx(0.1, abs=0.002)
    assert speech_duration(shifted) == pytest.approx(speech_duration(intervals), abs=0.005)
    # the same audio sits under the shifted labels
    offset = intervals[0][0] - shifted[0][0]
    i = int((intervals[0][0] + 0.2) * SR)
    assert trimmed[i - round(offset * SR)] == x[i]
    assert trim_silence(x, []) == (x, [])


def test_trim_silence_at_signal_edges() -> None:
    x = render([(0.0, 1.0)], 1.0)
    trimmed, shifted = trim_silence(x, speech_intervals(x))
    assert len(trimmed) == len(x) and shifted[0][0] == 0.0


def test_frame_energy_and_merge_helpers() -> None:
    e = frame_energy_db(np.ones(SR // 2, dtype=np.float32))
    assert len(e) == 1 + (SR // 2 - 400) // 160 and np.allclose(e, 0.0, atol=1e-6)
    assert len(frame_energy_db(np.ones(10, dtype=np.float32))) == 1
    assert merge_intervals([(2.0, 3.0), (0.0, 1.0), (1.1, 1.5)], max_gap=0.2) == [(0.0, 1.5), (2.0, 3.0)]
