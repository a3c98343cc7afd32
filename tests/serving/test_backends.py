"""The ingress -> arm payload (serving/backends.py): 16-bit PCM bytes, half of float32."""

from __future__ import annotations

import numpy as np

from serving.audio_store import from_pcm16, to_pcm16


def test_pcm16_round_trip_within_one_lsb() -> None:
    x = np.random.default_rng(0).uniform(-1, 1, 16000).astype(np.float32)
    payload = to_pcm16(x)
    assert isinstance(payload, bytes) and len(payload) == 2 * x.size
    np.testing.assert_allclose(from_pcm16(payload), x, atol=1.0 / 32767)


def test_pcm16_clips_out_of_range_and_passes_arrays_through() -> None:
    y = from_pcm16(to_pcm16(np.array([2.0, -3.0, 0.0], dtype=np.float32)))
    np.testing.assert_allclose(y, [1.0, -1.0, 0.0], atol=1e-4)
    arr = np.zeros(4, dtype=np.float64)
    assert from_pcm16(arr).dtype == np.float32
