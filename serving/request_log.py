"""One request id and one prediction-log row for every request that reaches the ingress.

:class:`RequestLogMiddleware` wraps the whole FastAPI app (outside its routing and validation), so
whatever becomes of a request, it is logged exactly once, when it ends:

* answered by the route (200, or a 4xx from :mod:`serving.limits` / :mod:`serving.auth`);
* refused by FastAPI itself (a query parameter that does not validate: 422), an unknown path (404)
  or method (405);
* an exception nobody handled: answered here as a 500 with the request id (and logged with its
  traceback in the JSON application log);
* cancelled because the client went away (Ray Serve's proxy cancels the call): status 499, a
  client-side status, and ``status = 'client_closed'`` in the row, never counted as a server error.

The read-only endpoints (``GET /v1/health``, ``/v1/models``, the OpenAPI docs) are not logged.

The request id is Ray Serve's (its HTTP proxy and the direct ingress ports put an ``X-Request-Id``
on the request, the client's own if it sent one, and echo it on the response) when it fits the
column (1-36 printable ASCII characters) and was not seen recently by this process, else a fresh
UUID; the same id is in the response body, the ``X-Request-Id`` header, the database row and the
JSON log lines (:mod:`serving.app_logging`). The one exception: a client-sent id that is too long
or repeats a recent one is replaced in the body and the row, while Ray's header still echoes the
client's value.

Requests that the HTTP server refuses before there is a request at all (a malformed request line or
header: uvicorn's own 400) are logged as rows too when they reach the ingress process, i.e. on the
direct ingress ports, by :class:`MalformedRequestRows`; on Ray's shared proxy port they never leave
the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flywheel.audio import SAMPLE_RATE
from serving.app_logging import REQUEST_ID
from serving.limits import CLIENT_CLOSED
from serving.prediction_log import PredictionRecord

log = logging.getLogger(__name__)
access = logging.getLogger("serving.access")
UNLOGGED = frozenset(
    {"/v1/health", "/v1/models", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
_ACCEPTED_ID = re.compile(r"^[\x20-\x7e]{1,36}$")  # what fits the request_id column, printable
RECENT_IDS = 65536  # ids remembered per process, to refuse a client re-using one
SHED = "shed"  # row status of a request refused because its arm was at capacity (503 + Retry-After)
MALFORMED = ("Invalid HTTP request received.", "Unsupported upgrade request.")
_recent: OrderedDict[str, None] = OrderedDict()  # request ids of this process, newest last
_recent_lock = threading.Lock()


@dataclass
class Outcome:
    """What a finished request tells the log (filled in by the route)."""

    status: int | None = None
    arm: str | None = None
    result: dict[str, Any] | None = None
    samples: np.ndarray | None = None
    error: str | None = None
    row_status: str | None = None  # overrides the status derived from the HTTP status ("shed")


@dataclass
class RequestContext:
    """One request on its way through the ingress."""

    request_id: str
    client_id: str | None
    t0: float = field(default_factory=time.perf_counter)
    outcome: Outcome = field(default_factory=Outcome)
    response_status: int | None = None
    disconnected: bool = False


def context_of(request: Request) -> RequestContext:
    """The :class:`RequestContext` of ``request`` (a fresh one if the middleware is not installed)."""
    ctx = request.scope.setdefault("state", {}).get("flywheel_request")
    if ctx is None:
        ctx = RequestContext(str(uuid.uuid4()), request.headers.get("x-client-id") or None)
        request.scope["state"]["flywheel_request"] = ctx
    return ctx


def row_status(http_status: int) -> str:
    """The ``status`` column for an HTTP status: ok, client_closed (499) or error (``shed`` is set
    by the route itself, see :data:`SHED`)."""
    if http_status < 400:
        return "ok"
    return "client_closed" if http_status == CLIENT_CLOSED else "error"


def record_of(ctx: RequestContext, method: str, path: str) -> tuple[PredictionRecord, np.ndarray | None]:
    """The prediction-log row of a finished request, and the audio to store with it (200s only)."""
    o = ctx.outcome
    status = o.status or ctx.response_status or (CLIENT_CLOSED if ctx.disconnected else 500)
    error = o.error
    if error is None and status >= 400:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "client closed request" if status == CLIENT_CLOSED else "error"
        error = f"{status} {phrase}: {method} {path}"
    result = o.result or {}
    samples = o.samples
    record = PredictionRecord(
        request_id=ctx.request_id,
        status=o.row_status or row_status(status),
        http_status=status,
        latency_ms=round((time.perf_counter() - ctx.t0) * 1000, 3),
        client_id=ctx.client_id,
        arm=o.arm,
        model_name=result.get("model"),
        model_version=result.get("model_version"),
        audio_duration_s=None if samples is None else round(len(samples) / SAMPLE_RATE, 3),
        segments=result.get("segments"),
        num_speakers=result.get("num_speakers"),
        error=error,
    )
    return record, (samples if status == 200 else None)


Submit = Callable[[PredictionRecord, "np.ndarray | None"], None]


class RequestLogMiddleware:
    """ASGI middleware: request id, one row per request, a 500 for exceptions, 499 for cancellation.

    ``submit`` receives each finished request's row (``PredictionLogger.submit``; None: rows off);
    ``begin``, when given, each logged request's provisional row as it starts (``PredictionLogger.begin``:
    the row a replay writes if this process dies before the request finishes).
    ``echo_request_id``: set the ``X-Request-Id`` response header here (off behind Ray Serve, whose
    HTTP layer adds it from the same id).
    """

    def __init__(
        self,
        app: ASGIApp,
        submit: Submit | None,
        echo_request_id: bool = True,
        begin: Callable[[PredictionRecord], None] | None = None,
    ):
        self.app = app
        self.submit = submit
        self.echo_request_id = echo_request_id
        self.begin = begin

    @staticmethod
    def _request_id(scope: Scope) -> str:
        incoming = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), b"")
        candidate = incoming.decode("latin-1").strip()
        with _recent_lock:
            if not _ACCEPTED_ID.match(candidate) or candidate in _recent:
                candidate = str(uuid.uuid4())
            _recent[candidate] = None
            if len(_recent) > RECENT_IDS:
                _recent.popitem(last=False)
        return candidate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request through the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rearm_uvicorn_warnings()
        method, path = scope.get("method", "?"), scope.get("path", "?")
        client = next((v for k, v in scope.get("headers", ()) if k == b"x-client-id"), b"")
        ctx = RequestContext(self._request_id(scope), client.decode("latin-1") or None)
        scope.setdefault("state", {})["flywheel_request"] = ctx
        token = REQUEST_ID.set(ctx.request_id)
        logged = not (path in UNLOGGED and method in ("GET", "HEAD"))
        if logged and self.begin is not None:
            died = f"500 the ingress process died while handling {method} {path}"
            provisional = PredictionRecord(
                ctx.request_id, "error", 500, 0.0, client_id=ctx.client_id, error=died
            )
            with contextlib.suppress(Exception):  # the journal never fails a request
                self.begin(provisional)

        async def watched_receive() -> Message:
            try:
                message = await receive()
            except Exception:
                # The transport itself failed (behind Ray Serve: the proxy cancelled its call that
                # streams the body, raised as Ray's TaskCancelledError): the client is gone.
                ctx.disconnected = True
                raise
            if message["type"] == "http.disconnect":
                ctx.disconnected = True
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctx.response_status = message["status"]
                if self.echo_request_id:
                    MutableHeaders(scope=message)["x-request-id"] = ctx.request_id
            await send(message)

        try:
            await self.app(scope, watched_receive, send_with_id)
        except asyncio.CancelledError:
            ctx.outcome.status = CLIENT_CLOSED
            ctx.outcome.error = "cancelled: the client closed the connection before the answer"
            raise
        except Exception as err:
            if ctx.disconnected:
                ctx.outcome.status, ctx.outcome.error = CLIENT_CLOSED, f"client went away: {err!r}"
            else:
                log.exception("request failed: %s %s", method, path)
                ctx.outcome.status, ctx.outcome.error = 500, f"{type(err).__name__}: {err}"
            if ctx.response_status is None:
                body = {"error": "internal error; the request was logged", "request_id": ctx.request_id}
                headers = {"x-request-id": ctx.request_id} if self.echo_request_id else None
                response = JSONResponse(body, status_code=ctx.outcome.status, headers=headers)
                with contextlib.suppress(Exception):  # the client is gone: nothing to answer
                    await response(scope, receive, send)
        finally:
            REQUEST_ID.reset(token)
            if logged:
                self._finish(ctx, method, path)

    def _finish(self, ctx: RequestContext, method: str, path: str) -> None:
        record, samples = record_of(ctx, method, path)
        if record.status == SHED:  # a decision, not a failure: visible in "problems only", not an ERROR
            level = logging.WARNING
        else:
            level = logging.ERROR if 500 <= record.http_status < 600 else logging.INFO
        access.log(
            level,
            "%s %s %d",
            method,
            path,
            record.http_status,
            extra={
                "request_id": record.request_id,
                "http_status": record.http_status,
                "latency_ms": record.latency_ms,
                "arm": record.arm,
                "model_version": record.model_version,
                "client_id": record.client_id,
                "error": record.error,
            },
        )
        if self.submit is not None:
            self.submit(record, samples)


# -- requests uvicorn refuses before the app sees them ------------------------------------------


class MalformedRequestRows(logging.Handler):
    """Turns uvicorn's "Invalid HTTP request received." warnings (it answers 400 itself, without
    calling the app) into prediction-log rows of their own."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._submit: weakref.WeakMethod | None = None

    def target(self, submit: Submit | None) -> None:
        """Where rows go (the latest service of this process)."""
        self._submit = weakref.WeakMethod(submit) if submit is not None else None  # type: ignore[arg-type]

    def emit(self, record: logging.LogRecord) -> None:
        """A row for a malformed request (other uvicorn warnings are ignored)."""
        message = record.getMessage()
        submit = self._submit() if self._submit is not None else None
        if submit is None or not message.startswith(MALFORMED):
            return
        row = PredictionRecord(
            request_id=str(uuid.uuid4()),
            status="error",
            http_status=400,
            latency_ms=0.0,
            error=f"malformed HTTP request, refused by the HTTP server: {message}",
        )
        access.info("malformed HTTP request 400", extra={"request_id": row.request_id, "http_status": 400})
        submit(row, None)


_MALFORMED = MalformedRequestRows()
_UVICORN_ERROR = logging.getLogger("uvicorn.error")
_watching = threading.Event()


def rearm_uvicorn_warnings() -> None:
    """Ray Serve silences ``uvicorn.error`` below CRITICAL when it starts a replica's HTTP server;
    put it back to WARNING so :class:`MalformedRequestRows` hears about malformed requests."""
    if _UVICORN_ERROR.level != logging.WARNING and _MALFORMED in _UVICORN_ERROR.handlers:
        _UVICORN_ERROR.setLevel(logging.WARNING)


def log_malformed_requests(submit: Submit | None, watch_s: float = 120.0) -> None:
    """Log uvicorn's 400s for malformed requests in this process as rows through ``submit``.

    For ``watch_s`` seconds a daemon thread re-arms ``uvicorn.error`` (see
    :func:`rearm_uvicorn_warnings`), so a malformed first request after start-up is heard too.
    """
    _MALFORMED.target(submit)
    if _MALFORMED not in _UVICORN_ERROR.handlers:
        _UVICORN_ERROR.addHandler(_MALFORMED)
    rearm_uvicorn_warnings()

    def watch() -> None:
        deadline = time.monotonic() + watch_s
        while time.monotonic() < deadline:
            rearm_uvicorn_warnings()
            time.sleep(0.5)

    if watch_s > 0 and not _watching.is_set():
        _watching.set()
        threading.Thread(target=watch, name="uvicorn-warnings", daemon=True).start()
