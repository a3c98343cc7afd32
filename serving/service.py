"""The ingress logic, independent of Ray: authenticate, read, decode, route, infer, answer, log.

:class:`DiarizationService` is what the Serve ingress deployment (``serving.app``) wraps and what a
plain uvicorn app can run for comparison; the HTTP routes are in ``serving.api``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from flywheel.audio import SAMPLE_RATE
from flywheel.audio_store import AudioStore
from flywheel.segments import annotation_from_turns, rttm_lines
from serving import app_logging
from serving.auth import AuthError, check_admin, check_api_key
from serving.backends import ArmBackend, ArmOverloaded
from serving.limits import InputError, Limits, audio_bytes, decode, read_body
from serving.prediction_log import PredictionLogger, PredictionRecord
from serving.request_log import SHED, RequestContext, context_of
from serving.routing import Router, validate_weights
from serving.settings import ServingSettings

log = logging.getLogger(__name__)
INLINE_DECODE_BYTES = 2 * 1024 * 1024  # larger uploads are decoded in a worker thread


def _error(status: int, message: str, request_id: str) -> JSONResponse:
    return JSONResponse({"error": message, "request_id": request_id}, status_code=status)


class DiarizationService:
    """A/B diarization over an :class:`~serving.backends.ArmBackend`, with the prediction log."""

    def __init__(
        self,
        backend: ArmBackend,
        configured_arms: list[str],
        weights: Mapping[str, float] | None = None,
        settings: ServingSettings | None = None,
        log_predictions: bool | None = None,
        role: str = "ingress",
    ):
        self.backend = backend
        self.configured_arms = sorted(configured_arms)
        self.settings = settings or ServingSettings()
        s = self.settings
        app_logging.configure(s.resolved_log_dir, role, s.log_level)
        self.limits = Limits(s.max_upload_bytes, s.max_duration_s, s.min_duration_s, s.upload_timeout_s)
        self.router = Router(weights or dict.fromkeys(self.configured_arms, 1.0), tuple(backend.available()))
        enabled = s.log_predictions if log_predictions is None else log_predictions
        self.logger: PredictionLogger | None = None
        if enabled:
            store = AudioStore(s.resolved_audio_dir, s.audio_retention_days) if s.store_audio else None
            self.logger = PredictionLogger(s.resolved_database_url, s.resolved_spool_dir, store)

    # -- configuration --------------------------------------------------------------------------
    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Swap in a new split (atomic: requests already routed are unaffected)."""
        self.router = Router(validate_weights(weights), tuple(self.backend.available()))
        log.info("A/B weights %s -> effective %s", dict(weights), self.router.effective)

    def reconfigure(self, user_config: Mapping[str, Any] | None) -> None:
        """Apply a Serve ``user_config`` (``{"weights": {arm: weight}}``)."""
        weights = (user_config or {}).get("weights")
        if weights is not None:
            self.set_weights(weights)

    # -- endpoints ------------------------------------------------------------------------------
    async def models(self) -> dict[str, Any]:
        """Arms, their models and versions, configured weights and effective traffic shares."""
        described = {d["arm"]: d for d in await self.backend.describe()}
        shares = self.router.effective
        arms = []
        for name in sorted(set(self.configured_arms) | set(described)):
            d = described.get(name, {"arm": name, "available": False})
            d["weight"] = float(self.router.weights.get(name, 0.0))
            d["share"] = shares.get(name, 0.0)
            arms.append(d)
        return {"mode": self.backend.mode, "arms": arms, "weights": dict(self.router.weights)}

    def health(self) -> tuple[int, dict[str, Any]]:
        """``(status, body)``: 200 when at least one arm can serve."""
        available = self.backend.available()
        body: dict[str, Any] = {
            "status": "ok" if available else "unavailable",
            "arms": available,
            "mode": self.backend.mode,
            "pid": os.getpid(),
            "prediction_log": self.logger.stats() if self.logger else None,
        }
        return (200 if available else 503), body

    async def diarize(
        self,
        request: Request,
        fmt: str = "json",
        arm_override: str | None = None,
        num_speakers: int | None = None,
    ) -> Response:
        """``POST /v1/diarize``: see the module docstring of ``serving.api``. The request's row is
        written by :class:`serving.request_log.RequestLogMiddleware` from ``context_of(request)``."""
        ctx = context_of(request)
        try:
            return await self._diarize(request, fmt, arm_override, num_speakers, ctx.client_id, ctx)
        except (AuthError, InputError) as err:
            ctx.outcome.status, ctx.outcome.error = err.status, str(err)
            return _error(err.status, str(err), ctx.request_id)

    async def _diarize(
        self,
        request: Request,
        fmt: str,
        arm_override: str | None,
        num_speakers: int | None,
        client_id: str | None,
        ctx: RequestContext,
    ) -> Response:
        outcome, t0 = ctx.outcome, ctx.t0
        check_api_key(request.headers, self.settings.api_key_set)
        if fmt not in ("json", "rttm"):
            raise InputError(400, f"format must be 'json' or 'rttm', got {fmt!r}")
        router = self.router  # one split for the whole request
        if arm_override:
            check_admin(request.headers, self.settings.admin_key)
            if arm_override not in self.backend.available():
                raise InputError(404, f"arm {arm_override!r} is not available; see GET /v1/models")
        body = await read_body(request, self.limits)
        data = await audio_bytes(request, body)
        if len(data) > INLINE_DECODE_BYTES:
            samples = await asyncio.to_thread(decode, data, self.limits)
        else:
            samples = decode(data, self.limits)
        outcome.samples = samples
        try:
            arm = arm_override or router.choose(client_id)
        except LookupError:
            raise InputError(503, "no model is available right now") from None
        outcome.arm = arm
        try:
            result = await self.backend.diarize(arm, samples, num_speakers)
        except ArmOverloaded as err:  # shed: 503 + Retry-After, one row with status 'shed'
            outcome.status, outcome.error, outcome.row_status = 503, str(err), SHED
            retry_after = max(1, math.ceil(err.retry_after_s))
            return JSONResponse(
                {"error": str(err), "request_id": ctx.request_id, "arm": arm, "retry_after_s": retry_after},
                status_code=503,
                headers={"Retry-After": str(retry_after), "X-Arm": arm},
            )
        outcome.status, outcome.result = 200, result
        latency_ms = round((time.perf_counter() - t0) * 1000, 2)
        request_id = ctx.request_id
        headers = {"X-Arm": arm, "X-Model-Version": str(result["model_version"])}
        warnings = list(result.get("warnings") or [])
        if warnings:  # also for RTTM, which has no place for them
            headers["X-Diarization-Warnings"] = " | ".join(warnings)
        if fmt == "rttm":
            turns = [(s["start"], s["end"], s["speaker"]) for s in result["segments"]]
            lines = rttm_lines(annotation_from_turns(turns, uri=request_id), uri=request_id)
            return PlainTextResponse("".join(f"{line}\n" for line in lines), headers=headers)
        return JSONResponse(
            {
                "request_id": request_id,
                "arm": arm,
                "model": result["model"],
                "model_version": result["model_version"],
                "latency_ms": latency_ms,
                "duration_s": round(len(samples) / SAMPLE_RATE, 3),
                "num_speakers": result["num_speakers"],
                "segments": result["segments"],
                "warnings": warnings,
            },
            headers=headers,
        )

    def begin_record(self, record: PredictionRecord) -> None:
        """Journal a request that has begun (its row if this process dies before it finishes)."""
        if self.logger is not None:
            self.logger.begin(record)

    def submit_record(self, record: PredictionRecord, samples: np.ndarray | None = None) -> None:
        """Hand a finished request's row (and its audio) to the prediction log, if it is on."""
        if self.logger is not None:
            self.logger.submit(record, samples)

    def close(self) -> None:
        """Flush the prediction log and release the arms."""
        if self.logger is not None:
            self.logger.close()
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()
