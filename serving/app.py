"""The Ray Serve application: a FastAPI ingress (A/B router + prediction log) and the arms.

The topology is chosen by ``args.embed_arms`` in the Serve config:

* ``false``: one deployment per arm (``arm-fast-cnn``, ...); request path
  client -> [Serve proxy] -> ``Ingress`` -> ``arm-<name>``. Arms scale independently.
* ``true``: the arms' models live inside each ``Ingress`` replica; request path
  client -> [Serve proxy] -> ``Ingress``: one hop less.
* a list of arm names (the shipped ``[fast-cnn]``): those arms are embedded, the others get their
  deployments: the light arm skips the hop, the heavy ones stay isolated behind their bounds.

With ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` in the environment that starts Ray, every ingress replica
also listens on its own port (30000 and up) and clients can skip the proxy hop.

``serve run serving/serve_config.yaml`` / ``serve deploy serving/serve_config.yaml`` build it with
:func:`build_app`; ``user_config.weights`` of ``Ingress`` is the A/B split, applied at runtime.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application

from serving.arms import Arm, ArmSpec
from serving.champion import resolve

log = logging.getLogger(__name__)
DEFAULT_ARMS = ("fast-cnn", "distilhubert")


class AppArgs(BaseModel):
    """``args`` of the application in the Serve config."""

    embed_arms: bool | list[str] = False
    embedded_workers: int = Field(1, ge=1, description="inference threads per ingress (embedded)")
    arms: dict[str, dict[str, Any]] = Field(default_factory=lambda: {name: {} for name in DEFAULT_ARMS})
    weights: dict[str, float] | None = None  # initial split; user_config.weights overrides
    log_predictions: bool | None = None  # default: FLYWHEEL_LOG_PREDICTIONS (on)

    def embedded(self) -> list[str]:
        """The arms whose models run inside the ingress."""
        if isinstance(self.embed_arms, bool):
            return sorted(self.arms) if self.embed_arms else []
        unknown = sorted(set(self.embed_arms) - set(self.arms))
        if unknown:
            raise ValueError(f"embed_arms names arms that are not configured: {unknown}")
        return sorted(self.embed_arms)


def _serve_request_id() -> str | None:
    """The Serve request id of the call being handled (None outside a Serve request)."""
    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or None
    except Exception:
        return None


@serve.deployment(name="arm", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=2)
class ArmDeployment:
    """One arm's model in its own replica (only built when the arm has a model)."""

    def __init__(self, spec: dict[str, Any]):
        from serving import app_logging
        from serving.settings import ServingSettings

        settings = ServingSettings()
        app_logging.configure(settings.resolved_log_dir, f"arm-{spec['name']}", settings.log_level)
        self.arm = Arm(ArmSpec.from_dict(spec["name"], spec.get("options")))
        if self.arm.spec.nice > 0:  # a heavy arm gives way to the light ones on shared cores
            os.nice(self.arm.spec.nice)
        if not self.arm.refresh():
            raise RuntimeError(f"arm {self.arm.name!r}: no model could be loaded")
        self.arm.start_polling()

    def diarize(self, samples: Any, num_speakers: int | None = None) -> dict[str, Any]:
        """Segments for one request (16-bit PCM bytes or float32; all its chunks in batched model calls)."""
        from flywheel.audio_store import from_pcm16
        from serving.app_logging import REQUEST_ID

        token = REQUEST_ID.set(_serve_request_id())  # the ingress's id: Serve passes it along
        try:
            return self.arm.diarize(from_pcm16(samples), num_speakers)
        except Exception:
            log.exception("arm %s: diarization failed", self.arm.name)
            raise
        finally:
            REQUEST_ID.reset(token)

    def describe(self) -> dict[str, Any]:
        """Model, version and source of this replica's arm."""
        return {**self.arm.describe(), "pid": os.getpid()}

    def check_health(self) -> None:
        """Serve health check: a replica without a model is unhealthy."""
        if not self.arm.available:
            raise RuntimeError("no model loaded")


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress()
class Ingress:
    """FastAPI ingress: authentication, limits, A/B routing, prediction logging."""

    def __init__(self, args: dict[str, Any], arm_handles: dict[str, Any] | None = None):
        from serving.backends import DeploymentArms, EmbeddedArms, MixedArms
        from serving.service import DiarizationService

        a = AppArgs(**args)
        specs = {name: ArmSpec.from_dict(name, opts) for name, opts in a.arms.items()}
        retry_after = {name: spec.retry_after_s for name, spec in specs.items()}
        embedded = a.embedded()
        backend: Any = None
        if embedded:
            arms = {name: Arm(specs[name]) for name in embedded}
            for arm in arms.values():
                arm.refresh()
                arm.start_polling()
            max_pending = {name: specs[name].max_pending for name in embedded}
            backend = EmbeddedArms(arms, a.embedded_workers, max_pending, retry_after)
        if len(embedded) < len(a.arms):
            deployed = DeploymentArms(arm_handles or {}, retry_after)
            backend = deployed if backend is None else MixedArms(backend, deployed)
        self.service = DiarizationService(backend, list(a.arms), a.weights, log_predictions=a.log_predictions)

    def __serve_build_asgi_app__(self) -> Any:
        from serving.api import create_api
        from serving.request_id_header import ingress_sets_request_id

        # Serve's HTTP layer appends its own X-Request-Id; with our proxy callback installed it keeps
        # the ingress's (the id of the body and the row) and drops Ray's copy.
        return create_api(self.service, echo_request_id=ingress_sets_request_id())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``user_config: {weights: {arm: weight}}``; applied without restarting the replica."""
        self.service.reconfigure(user_config)

    def __del__(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            service.close()


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Application builder for ``serve run``/``serve deploy`` (``import_path: serving.app:build_app``)."""
    a = AppArgs(**(args or {}))
    handles: dict[str, Application] = {}
    embedded = a.embedded()
    for name, opts in a.arms.items():
        if name in embedded:  # runs inside the ingress replica: no deployment of its own
            continue
        spec = ArmSpec.from_dict(name, opts)
        if resolve(name, spec.model_name, spec.model_path, spec.tracking_uri) is None:
            log.warning("arm %s has no model: it is left out (weight 0)", name)
            continue
        deployment_options = dict(opts.get("deployment") or {})
        bound = ArmDeployment.options(name=f"arm-{name}", **deployment_options)
        handles[name] = bound.bind({"name": name, "options": opts})
    return Ingress.bind(a.model_dump(), handles)
