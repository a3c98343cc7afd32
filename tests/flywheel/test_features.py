"""The shared log-mel front-end."""

from __future__ import annotations

import numpy as np

from flywheel.features import FeatureConfig, log_mel, mel_filterbank, num_frames


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
