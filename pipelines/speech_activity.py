"""Tight energy-based speech intervals for CLEAN single-speaker recordings.

This labels the inventory, not arbitrary audio: it assumes one speaker, little noise and speech as
the loudest thing in the file. A 25 ms frame is speech when its energy is above
about ``max(peak - rel_peak_db, floor + floor_margin_db)`` where ``peak`` is a high percentile of
the frame energies and ``floor`` a low one (the noise floor; see :func:`speech_threshold_db`).
A run of speech frames spans the hops around the frame centres. Gaps shorter than ``min_gap_s`` are
bridged, islands shorter than ``min_island_s`` dropped, and every interval padded by ``pad_s``.
So a labelled interval never holds a silence much longer than ``min_gap_s``.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000
FRAME_S = 0.025
HOP_S = 0.010
ENERGY_FLOOR_DB = -120.0  # digital silence is clamped here

Interval = tuple[float, float]


def frame_energy_db(
    samples: np.ndarray, sr: int = SAMPLE_RATE, frame_s: float = FRAME_S, hop_s: float = HOP_S
) -> np.ndarray:
    """Mean-square energy (dB re full scale) of every ``frame_s`` frame taken each ``hop_s``."""
    win, hop = max(1, round(frame_s * sr)), max(1, round(hop_s * sr))
    x = np.asarray(samples, dtype=np.float64)
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    power = np.mean(frames * frames, axis=1)
    return np.maximum(10.0 * np.log10(power + 1e-20), ENERGY_FLOOR_DB)


def speech_threshold_db(
    energy_db: np.ndarray,
    *,
    peak_percentile: float = 99.0,
    floor_percentile: float = 5.0,
    rel_peak_db: float = 40.0,
    floor_margin_db: float = 9.0,
    max_floor_rel_db: float = 20.0,
) -> float:
    """Energy threshold relative to the utterance's peak level and its noise floor.

    ``max(peak - rel_peak_db, min(floor + floor_margin_db, peak - max_floor_rel_db))``: the floor
    term never asks for more than ``max_floor_rel_db`` below the peak, so a recording with no
    silence at all (whose low percentile is quiet speech, not noise) is still labelled speech.
    """
    peak = float(np.percentile(energy_db, peak_percentile))
    floor = float(np.percentile(energy_db, floor_percentile))
    return max(peak - rel_peak_db, min(floor + floor_margin_db, peak - max_floor_rel_db))


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` frame indices of every run of True values."""
    padded = np.concatenate(([False], active, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def merge_intervals(intervals: list[Interval], max_gap: float = 0.0) -> list[Interval]:
    """Sort and merge intervals that overlap or are separated by less than ``max_gap`` seconds."""
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start - out[-1][1] < max_gap + 1e-9:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def speech_intervals(
    samples: np.ndarray,
    sr: int = SAMPLE_RATE,
    *,
    frame_s: float = FRAME_S,
    hop_s: float = HOP_S,
    rel_peak_db: float = 40.0,
    floor_margin_db: float = 9.0,
    min_peak_db: float = -60.0,
    min_gap_s: float = 0.2,
    min_island_s: float = 0.05,
    pad_s: float = 0.02,
) -> list[Interval]:
    """Tight speech intervals ``[(start, end), ...]`` in seconds of a clean single-speaker signal.

    Args:
        samples: mono audio.
        sr: its sample rate.
        frame_s, hop_s: analysis frame length and hop.
        rel_peak_db: frames more than this below the utterance's peak level are silence.
        floor_margin_db: frames less than this above the noise floor are silence.
        min_peak_db: if even the peak is below this level the signal is silence (returns ``[]``).
        min_gap_s: silences shorter than this inside speech are bridged.
        min_island_s: speech islands shorter than this (after bridging) are dropped.
        pad_s: padding added on both sides of every interval (clipped to the signal).
    """
    duration = len(samples) / sr
    if len(samples) == 0:
        return []
    energy = frame_energy_db(samples, sr, frame_s, hop_s)
    if float(np.max(energy)) < min_peak_db:
        return []
    threshold = speech_threshold_db(energy, rel_peak_db=rel_peak_db, floor_margin_db=floor_margin_db)
    hop = round(hop_s * sr) / sr
    centre = round(frame_s * sr) / sr / 2
    # a run of active frames a..b covers the hops around their centres
    raw = [
        (max(0.0, a * hop + centre - hop / 2), min(duration, b * hop + centre + hop / 2))
        for a, b in _runs(energy > threshold)
    ]
    merged = merge_intervals(raw, max_gap=min_gap_s)
    kept = [(s, e) for s, e in merged if e - s >= min_island_s]
    padded = [(max(0.0, s - pad_s), min(duration, e + pad_s)) for s, e in kept]
    return [(round(s, 3), round(e, 3)) for s, e in merge_intervals(padded)]


def trim_silence(
    samples: np.ndarray, intervals: list[Interval], sr: int = SAMPLE_RATE, max_edge_s: float = 0.1
) -> tuple[np.ndarray, list[Interval]]:
    """Cut leading/trailing silence to at most ``max_edge_s``; intervals are shifted to match.

    Returns the samples unchanged when ``intervals`` is empty.
    """
    if not intervals:
        return samples, []
    duration = len(samples) / sr
    start = max(0.0, intervals[0][0] - max_edge_s)
    end = min(duration, intervals[-1][1] + max_edge_s)
    first, last = round(start * sr), round(end * sr)
    offset = first / sr
    new_duration = (last - first) / sr
    shifted = [
        (round(max(0.0, s - offset), 3), round(min(new_duration, e - offset), 3)) for s, e in intervals
    ]
    return samples[first:last], shifted


def speech_duration(intervals: list[Interval]) -> float:
    """Total length of ``intervals`` in seconds."""
    return float(sum(e - s for s, e in intervals))
