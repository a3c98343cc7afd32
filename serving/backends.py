"""Where an arm's model runs: inside the ingress process, or in its own Serve deployment.

All expose the same coroutines, so the ingress code does not care which topology is deployed:

* :class:`EmbeddedArms` -- models inside the ingress replica (no handle hop; inference in a thread
  pool so the event loop keeps accepting requests; an optional bound on each arm's pending requests);
* :class:`DeploymentArms` -- one Serve deployment per arm, called through deployment handles
  (one hop per request, arms scale independently);
* :class:`MixedArms` -- some arms embedded (the light one, to spare it the hop), the others as
  deployments (the heavy ones, isolated in their own replicas with their own bounds).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from flywheel.audio_store import to_pcm16
from serving.arms import Arm

log = logging.getLogger(__name__)


class ArmOverloaded(Exception):
    """The arm's replicas are all busy and its queue is full (``max_ongoing_requests`` and
    ``max_queued_requests`` of its deployment): the request is shed, not queued."""

    def __init__(self, arm: str, detail: str, retry_after_s: float = 1.0):
        super().__init__(f"arm {arm!r} is at capacity, request shed: {detail}")
        self.arm = arm
        self.retry_after_s = retry_after_s


class ArmBackend(Protocol):
    """What the ingress needs from the arms."""

    mode: str

    def available(self) -> list[str]:
        """Names of the arms that can take traffic."""
        ...

    async def diarize(self, arm: str, samples: np.ndarray, num_speakers: int | None = None) -> dict[str, Any]:
        """Run arm ``arm`` on ``samples`` (see :meth:`serving.arms.Arm.diarize`)."""
        ...

    async def describe(self) -> list[dict[str, Any]]:
        """One description per configured arm (see :meth:`serving.arms.Arm.describe`)."""
        ...


class EmbeddedArms:
    """Arms loaded in this process.

    ``max_pending``: per arm, the requests it may hold (running plus waiting for the worker pool);
    one more is shed (:class:`ArmOverloaded`, with the arm's ``retry_after_s``) instead of queued.
    An arm without an entry is unbounded (the ingress's own ``max_ongoing_requests`` still is).
    """

    mode = "embedded"

    def __init__(
        self,
        arms: dict[str, Arm],
        workers: int = 1,
        max_pending: dict[str, int] | None = None,
        retry_after_s: dict[str, float] | None = None,
    ):
        self.arms = arms
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="arm")
        self.max_pending = {k: v for k, v in (max_pending or {}).items() if v is not None}
        self.retry_after_s = retry_after_s or {}
        self.pending = dict.fromkeys(arms, 0)  # event-loop only: no lock needed

    def available(self) -> list[str]:
        """Arms with a loaded model."""
        return sorted(name for name, arm in self.arms.items() if arm.available)

    async def diarize(self, arm: str, samples: np.ndarray, num_speakers: int | None = None) -> dict[str, Any]:
        """Inference in the worker pool; raises :class:`ArmOverloaded` past the arm's ``max_pending``."""
        limit = self.max_pending.get(arm)
        if limit is not None and self.pending[arm] >= limit:
            detail = f"{self.pending[arm]} requests pending in the ingress (max_pending {limit})"
            raise ArmOverloaded(arm, detail, self.retry_after_s.get(arm, 1.0))
        self.pending[arm] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, self.arms[arm].diarize, samples, num_speakers
            )
        finally:
            self.pending[arm] -= 1

    async def describe(self) -> list[dict[str, Any]]:
        """Descriptions of all arms."""
        return [self.arms[name].describe() for name in sorted(self.arms)]

    def close(self) -> None:
        """Stop polling and the worker pool."""
        for arm in self.arms.values():
            arm.stop()
        self._pool.shutdown(wait=False)


class DeploymentArms:
    """Arms as Serve deployments (``arm-<name>``), called through their handles."""

    mode = "deployments"

    def __init__(
        self,
        handles: dict[str, Any],
        retry_after_s: dict[str, float] | None = None,
        replica_retries: int = 2,
    ):
        self.handles = handles
        self.retry_after_s = retry_after_s or {}
        self.replica_retries = replica_retries

    def available(self) -> list[str]:
        """Arms whose deployment exists (only arms with a model at deploy time get one)."""
        return sorted(self.handles)

    async def diarize(self, arm: str, samples: np.ndarray, num_speakers: int | None = None) -> dict[str, Any]:
        """One handle hop to a replica of the arm, carrying the audio as 16-bit PCM bytes.

        A replica that dies under the call (``RayActorError``: killed, crashed, its node gone) costs
        the caller nothing: diarization has no side effects, so the call is sent again, up to
        ``replica_retries`` times, and Serve routes it to a live replica (or the one it starts).

        Raises :class:`ArmOverloaded` when Serve refuses the call because the arm's queue is full
        (``BackPressureError``: ``max_queued_requests`` requests already wait for a free replica).
        """
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError

        pcm = to_pcm16(samples)
        for attempt in range(self.replica_retries + 1):
            try:
                return await self.handles[arm].diarize.remote(pcm, num_speakers)
            except BackPressureError as err:
                raise ArmOverloaded(arm, str(err), self.retry_after_s.get(arm, 1.0)) from None
            except RayActorError as err:
                if attempt == self.replica_retries:
                    raise
                log.warning("arm %s: replica gone under the call (%s); sending it again", arm, err)
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def describe(self) -> list[dict[str, Any]]:
        """Ask one replica of each arm."""
        return list(await asyncio.gather(*(self.handles[n].describe.remote() for n in sorted(self.handles))))


class MixedArms:
    """Some arms embedded in the ingress, the others behind their deployments' handles."""

    mode = "mixed"

    def __init__(self, embedded: EmbeddedArms, deployments: DeploymentArms):
        overlap = set(embedded.arms) & set(deployments.handles)
        if overlap:
            raise ValueError(f"arms both embedded and deployed: {sorted(overlap)}")
        self.embedded = embedded
        self.deployments = deployments

    def _backend(self, arm: str) -> EmbeddedArms | DeploymentArms:
        return self.embedded if arm in self.embedded.arms else self.deployments

    def available(self) -> list[str]:
        """Embedded arms with a model, and the deployed arms."""
        return sorted(self.embedded.available() + self.deployments.available())

    async def diarize(self, arm: str, samples: np.ndarray, num_speakers: int | None = None) -> dict[str, Any]:
        """Where the arm runs: in this process or one hop away."""
        return await self._backend(arm).diarize(arm, samples, num_speakers)

    async def describe(self) -> list[dict[str, Any]]:
        """Descriptions of all arms, by name."""
        both = await self.embedded.describe() + await self.deployments.describe()
        return sorted(both, key=lambda d: d["arm"])

    def close(self) -> None:
        """Stop the embedded arms."""
        self.embedded.close()
