"""Helpers shared by the serving tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

ADMIN_KEY = "test-admin-key"
API_KEY = "test-api-key"


@dataclass
class LiveApp:
    """A running Serve app: proxy URL, direct ingress URL, runtime dir, the model files."""

    proxy: str
    direct: str
    runtime: Path
    reload_model: Path  # the distilhubert arm's file (replace it to trigger a hot reload)


def encode(samples: np.ndarray, sr: int = 16000, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    """Samples (time,) or (time, channels) as an audio file in memory."""
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def build_test_service(runtime: Path, onnx: Path, max_bytes: int = 1024 * 1024) -> Any:
    """An in-process service (no Ray) on ``onnx``: both arms (distilhubert at weight 0), API keys,
    the admin key, small limits, its runtime (database, audio, spool, JSON log) under ``runtime``."""
    from serving.settings import ServingSettings
    from serving.standalone import build_service

    settings = ServingSettings(
        runtime_dir=runtime,
        api_keys=f"{API_KEY},second-key",
        admin_key=ADMIN_KEY,
        max_upload_bytes=max_bytes,
        max_duration_s=30,
        upload_timeout_s=5,
    )
    arms = {
        "fast-cnn": {"model_path": str(onnx)},
        "distilhubert": {"model_path": str(onnx), "model_name": "fast-cnn"},
    }
    return build_service(arms, {"fast-cnn": 1.0, "distilhubert": 0.0}, settings)


def call(service: Any, method: str, url: str, key: str | None = API_KEY, **kw: Any) -> httpx.Response:
    """One request to ``service``'s API in process (ASGI), with the API key unless ``key`` is None."""
    from serving.api import create_api

    headers = dict(kw.pop("headers", {}))
    if key:
        headers["X-API-Key"] = key

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_api(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, url, headers=headers, timeout=30, **kw)

    return asyncio.run(go())


def endless_chunked_upload(
    port: int, path: str, headers: dict[str, str], max_bytes: int, timeout_s: float = 30.0
) -> tuple[int | None, int]:
    """Stream a chunked body of zeros to 127.0.0.1:``port`` until the server answers (or
    ``max_bytes``/``timeout_s`` run out); returns ``(status or None, bytes sent)``."""
    import select
    import socket
    import time

    chunk = b"\0" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sent = 0
    deadline = time.monotonic() + timeout_s
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head.encode())
        while sent < max_bytes and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except OSError:  # the server answered and closed
                break
            sent += len(chunk)
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        try:
            reply = sock.recv(4096)
        except OSError:
            return None, sent
    try:
        return int(reply.split(b" ", 2)[1]), sent
    except (IndexError, ValueError):
        return None, sent
