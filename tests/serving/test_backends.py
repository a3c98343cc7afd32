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


class _SlowArm:
    """An embedded arm stand-in: ``diarize`` blocks until released."""

    def __init__(self, name: str):
        import threading

        self.name, self.available, self.calls = name, True, 0
        self.release = threading.Event()

    def diarize(self, samples, num_speakers=None) -> dict:
        self.calls += 1
        self.release.wait(5)
        return {"arm": self.name, "segments": []}

    def describe(self) -> dict:
        return {"arm": self.name, "available": True}

    def stop(self) -> None:
        self.release.set()


def test_an_embedded_arm_past_max_pending_is_shed_not_queued() -> None:
    import asyncio

    import pytest

    from serving.backends import ArmOverloaded, EmbeddedArms

    arm = _SlowArm("fast-cnn")
    arms = EmbeddedArms(
        {"fast-cnn": arm}, workers=1, max_pending={"fast-cnn": 2}, retry_after_s={"fast-cnn": 3}
    )
    x = np.zeros(1600, dtype=np.float32)

    async def burst() -> list:
        first = [asyncio.create_task(arms.diarize("fast-cnn", x)) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert arms.pending["fast-cnn"] == 2
        with pytest.raises(ArmOverloaded) as err:
            await arms.diarize("fast-cnn", x)
        assert err.value.retry_after_s == 3 and "max_pending 2" in str(err.value)
        arm.release.set()
        done = await asyncio.gather(*first)
        assert arms.pending["fast-cnn"] == 0
        return [*done, await arms.diarize("fast-cnn", x)]  # room again once they finished

    assert [r["arm"] for r in asyncio.run(burst())] == ["fast-cnn"] * 3
    arms.close()


def test_mixed_arms_run_embedded_arms_here_and_the_others_over_their_handles() -> None:
    import asyncio

    import pytest

    from serving.backends import DeploymentArms, EmbeddedArms, MixedArms

    fast = _SlowArm("fast-cnn")
    fast.release.set()
    handle = _FlakyHandle(failures=0)
    handle.describe = type("D", (), {"remote": staticmethod(lambda: _coro({"arm": "teacher"}))})()
    mixed = MixedArms(EmbeddedArms({"fast-cnn": fast}), DeploymentArms({"teacher": handle}))
    x = np.zeros(1600, dtype=np.float32)
    assert mixed.mode == "mixed" and mixed.available() == ["fast-cnn", "teacher"]
    assert asyncio.run(mixed.diarize("fast-cnn", x))["arm"] == "fast-cnn" and fast.calls == 1
    assert asyncio.run(mixed.diarize("teacher", x)) == {"segments": [], "bytes": 3200} and handle.calls == 1
    assert [d["arm"] for d in asyncio.run(mixed.describe())] == ["fast-cnn", "teacher"]
    with pytest.raises(ValueError, match="both embedded and deployed"):
        MixedArms(EmbeddedArms({"teacher": fast}), DeploymentArms({"teacher": handle}))
    mixed.close()


async def _coro(value):
    return value


def test_embed_arms_selects_all_none_or_the_named_arms() -> None:
    import pytest

    from serving.app import AppArgs

    arms = {"fast-cnn": {}, "distilhubert": {}, "teacher": {}}
    assert AppArgs(embed_arms=True, arms=arms).embedded() == ["distilhubert", "fast-cnn", "teacher"]
    assert AppArgs(embed_arms=False, arms=arms).embedded() == []
    assert AppArgs(embed_arms=["fast-cnn"], arms=arms).embedded() == ["fast-cnn"]
    with pytest.raises(ValueError, match="not configured"):
        AppArgs(embed_arms=["fast"], arms=arms).embedded()
