"""One ``X-Request-Id`` per response behind Ray Serve, and it is the ingress's id.

Ray Serve's HTTP layer (the shared proxy and a replica's direct-ingress port) wraps every app in its
``RequestIdMiddleware``, which appends ``X-Request-ID`` with the id it took from the request (the
client's header, or one it made up) to every response. The ingress, though, keeps the client's id
only when it fits and was not seen recently (:mod:`serving.request_log`), and otherwise answers,
logs and writes its row under a fresh one. So that the header a client reads is the id of the body
and of the row in every case, the ingress sets the header itself and this middleware, mounted
around Ray's through ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (see :data:`CALLBACK_ENV`),
drops the copies appended after the app's own.
"""

from __future__ import annotations

import os

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "serving.request_id_header:proxy_middlewares"
HEADER = "x-request-id"


def keep_first_request_id(message: Message) -> None:
    """Leave the first ``X-Request-Id`` header of a ``http.response.start`` message, drop the rest."""
    headers = MutableHeaders(scope=message)
    values = headers.getlist(HEADER)
    if len(values) > 1:
        headers[HEADER] = values[0]  # replaces every occurrence with the first value


class OneRequestIdHeader:
    """ASGI middleware: responses keep only the first ``X-Request-Id`` (the app's)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through; fix the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_one_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                keep_first_request_id(message)
            await send(message)

        await self.app(scope, receive, send_one_id)


def proxy_middlewares() -> list[Middleware]:
    """Ray Serve's HTTP proxy callback (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    return [Middleware(OneRequestIdHeader)]


def ingress_sets_request_id() -> bool:
    """Whether this process's Serve HTTP layer runs :func:`proxy_middlewares`, so the ingress may set
    ``X-Request-Id`` itself (without it, Ray's header is the only one and the ingress leaves it)."""
    return os.environ.get(CALLBACK_ENV) == CALLBACK
