"""The ingress -> arm payload (serving/backends.py): 16-bit PCM bytes, half of float32."""

from __future__ import annotations

import numpy as np

from flywheel.audio_store import from_pcm16, to_pcm16


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


class _FlakyHandle:
    """A deployment handle whose first ``failures`` calls die with a replica (Ray's own error)."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0
        self.diarize = self

    def remote(self, pcm: bytes, num_speakers: int | None):
        from ray.exceptions import ActorUnavailableError

        self.calls += 1
        failed = self.calls <= self.failures

        async def answer() -> dict:
            if failed:
                raise ActorUnavailableError("Actor is unavailable.", b"\0" * 16)
            return {"segments": [], "bytes": len(pcm)}

        return answer()


def test_a_replica_that_dies_under_the_call_is_retried_on_another() -> None:
    import asyncio

    from serving.backends import DeploymentArms

    handle = _FlakyHandle(failures=2)
    arms = DeploymentArms({"fast-cnn": handle}, replica_retries=2)
    out = asyncio.run(arms.diarize("fast-cnn", np.zeros(1600, dtype=np.float32)))
    assert out == {"segments": [], "bytes": 3200} and handle.calls == 3


def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    import asyncio

    import pytest
    from ray.exceptions import RayActorError

    from serving.backends import DeploymentArms

    handle = _FlakyHandle(failures=5)
    arms = DeploymentArms({"fast-cnn": handle}, replica_retries=1)
    with pytest.raises(RayActorError):
        asyncio.run(arms.diarize("fast-cnn", np.zeros(16, dtype=np.float32)))
    assert handle.calls == 2
