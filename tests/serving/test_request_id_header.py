"""One X-Request-Id per response behind Ray Serve (serving/request_id_header.py), in process: the
middleware wrapped around Ray's own RequestIdMiddleware, as the proxy callback mounts it."""

from __future__ import annotations

import asyncio
import os
import sys
import types

import pytest
from ray.serve._private.http_util import RequestIdMiddleware
from starlette.datastructures import MutableHeaders

from serving import control
from serving.control import ray_env
from serving.request_id_header import CALLBACK, CALLBACK_ENV, OneRequestIdHeader, proxy_middlewares


async def _app_with_its_own_id(scope, receive, send) -> None:
    """An app that answers under its own id (as the ingress does for a refused client id)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"ingress-id")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _headers_of(app, client_id: bytes) -> list[str]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", client_id)]}
    asyncio.run(app(scope, receive, send))
    return MutableHeaders(scope=sent[0]).getlist("x-request-id")


def test_ray_alone_answers_with_two_ids_and_the_callback_keeps_the_apps() -> None:
    rays = RequestIdMiddleware(_app_with_its_own_id)
    assert _headers_of(rays, b"client-id") == ["ingress-id", "client-id"]  # what Ray does by itself
    [middleware] = proxy_middlewares()
    wrapped = middleware.cls(RequestIdMiddleware(_app_with_its_own_id))
    assert isinstance(wrapped, OneRequestIdHeader)
    assert _headers_of(wrapped, b"client-id") == ["ingress-id"]


def test_the_local_ray_mounts_the_callback() -> None:
    assert ray_env()[CALLBACK_ENV] == CALLBACK
    module, name = CALLBACK.split(":")
    assert getattr(__import__(module, fromlist=[name]), name) is proxy_middlewares


def test_the_serve_runner_starts_ray_with_the_whole_ray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serving.control.start_ray``: the core's loopback start plus the Serve environment."""
    calls: list[dict[str, str]] = []
    ray = types.ModuleType("ray")
    ray.is_initialized = lambda: False
    ray.init = lambda **_: calls.append(dict(os.environ))
    monkeypatch.setitem(sys.modules, "ray", ray)
    env = {k: v for k, v in os.environ.items() if k not in ray_env(True) and k != "RAY_ADDRESS"}
    monkeypatch.setattr(os, "environ", env)
    control.start_ray()
    assert {k: calls[0].get(k) for k in ray_env(True)} == ray_env(True)
