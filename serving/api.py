"""HTTP routes of the diarization service (FastAPI; OpenAPI docs at ``/docs``).

``POST /v1/diarize``
    Audio as the raw body or as a multipart file field (WAV, FLAC, OGG; any sample rate, any
    number of channels). Headers: ``X-Client-Id`` (sticky A/B arm), ``X-API-Key`` (when keys are
    configured), ``X-Admin-Key`` (with ``?arm=``). Query: ``format=json|rttm``, ``arm=NAME``,
    ``num_speakers=N`` (when the caller knows it; otherwise the count is estimated).
    Answers ``{request_id, arm, model, model_version, latency_ms, duration_s, num_speakers,
    segments: [{start, end, speaker}]}`` or RTTM text; bad input answers 4xx with ``{error}``.
``GET /v1/models``
    Arms, their model versions, configured weights and effective traffic shares.
``GET /v1/health``
    200 when at least one arm can serve, else 503.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from serving.request_log import RequestLogMiddleware, context_of, log_malformed_requests
from serving.service import DiarizationService

MAX_SPEAKERS = 20  # largest ``num_speakers`` a request may ask for

DESCRIPTION = (
    "Speaker diarization with A/B arms. Send audio (WAV, FLAC, OGG; any rate and channels) as the "
    "raw body or a multipart file; get who spoke when as JSON segments or RTTM."
)
AUDIO_BODY = {
    "requestBody": {
        "content": {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "audio/flac": {"schema": {"type": "string", "format": "binary"}},
            "audio/ogg": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
        "required": True,
    }
}


def create_api(service: DiarizationService, echo_request_id: bool = True) -> FastAPI:
    """The FastAPI app serving ``service``; every request is logged once (``serving.request_log``).

    ``echo_request_id``: set ``X-Request-Id`` on responses (False behind Ray Serve, which adds it).
    """
    api = FastAPI(title="diarization-flywheel", version="1", description=DESCRIPTION)
    api.add_middleware(
        RequestLogMiddleware,
        submit=service.submit_record,
        echo_request_id=echo_request_id,
        begin=service.begin_record,
    )
    log_malformed_requests(service.submit_record)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """Bad query parameters: 422 with one readable ``error``, like every other refusal."""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors()
        )
        ctx = context_of(request)
        ctx.outcome.status, ctx.outcome.error = 422, f"invalid request: {problems}"
        return JSONResponse({"error": ctx.outcome.error, "request_id": ctx.request_id}, status_code=422)

    @api.post("/v1/diarize", openapi_extra=AUDIO_BODY, summary="Who spoke when")
    async def diarize(
        request: Request,
        format: str = Query("json", description="json or rttm"),
        arm: str | None = Query(None, description="force an arm (needs X-Admin-Key)"),
        num_speakers: int | None = Query(
            None, ge=1, le=MAX_SPEAKERS, description="the number of speakers, when known (default: estimated)"
        ),
    ) -> Response:
        return await service.diarize(request, format, arm, num_speakers)

    @api.get("/v1/models", summary="Arms, model versions and weights")
    async def models() -> dict[str, Any]:
        return await service.models()

    @api.get("/v1/health", summary="Liveness and readiness")
    async def health() -> JSONResponse:
        status, body = service.health()
        return JSONResponse(body, status_code=status)

    return api
