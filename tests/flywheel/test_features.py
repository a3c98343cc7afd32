"""The shared log-mel front-end."""

from __future__ import annotations

import numpy as np

from flywheel.features import (
    FeatureConfig,
    chunk_log_mels,
    log_mel,
    mel_filterbank,
    model_inputs,
    num_frames,
)


def test_shape_and_frame_count() -> None:
    x = np.random.default_rng(0).standard_normal(80_000).astype(np.float32)
    feats = log_mel(x)
    assert feats.shape == (64, num_frames(80_000)) == (64, 500)
    assert feats.dtype == np.float32 and np.isfinite(feats).all()


def test_blocks_do_not_change_the_result() -> None:
    x = np.random.default_rng(1).standard_normal(50_000).astype(np.float32)
    assert np.allclose(log_mel(x, block_frames=7), log_mel(x), atol=1e-5)


def test_tone_lands_in_the_right_band() -> None:
    t = np.arange(16_000) / 16_000
    low = log_mel(np.sin(2 * np.pi * 200 * t).astype(np.float32)).mean(axis=1)
    high = log_mel(np.sin(2 * np.pi * 4000 * t).astype(np.float32)).mean(axis=1)
    assert low.argmax() < high.argmax()


def test_filterbank_covers_the_band() -> None:
    fb = mel_filterbank(FeatureConfig())
    assert fb.shape == (64, 257)
    assert (fb.sum(axis=1) > 0).all()


def _chunk(x: np.ndarray, start: int, size: int) -> np.ndarray:
    part = x[start : start + size]
    return np.pad(part, (0, size - len(part)))


def test_overlapping_chunks_share_frames_exactly() -> None:
    # starts on hop boundaries, overlapping, the last running past the end (zero padded)
    x = np.random.default_rng(2).standard_normal(16_000 * 12).astype(np.float32)
    starts = np.array([0, 20_000, 40_000, 60_000, 150_080, 176_000])
    shared = chunk_log_mels(x, starts, 80_000)
    one_by_one = np.stack([log_mel(_chunk(x, s, 80_000)) for s in starts])
    assert shared.shape == (6, 64, 500)
    assert np.abs(shared - one_by_one).max() < 1e-4


def test_chunks_off_the_hop_grid_fall_back_to_one_by_one() -> None:
    x = np.random.default_rng(3).standard_normal(40_000).astype(np.float32)
    starts = np.array([0, 1_001, 8_003])
    one_by_one = np.stack([log_mel(_chunk(x, s, 16_000)) for s in starts])
    assert np.abs(chunk_log_mels(x, starts, 16_000) - one_by_one).max() < 1e-4
    assert chunk_log_mels(x, np.array([], dtype=np.int64), 16_000).shape == (0, 64, 100)


def test_waveform_inputs_are_zero_padded_slices() -> None:
    x = np.arange(10, dtype=np.float64)
    batch = model_inputs(x, np.array([0, 6]), 6, FeatureConfig(kind="waveform"))
    assert batch.dtype == np.float32
    assert batch.tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 0, 0]]
