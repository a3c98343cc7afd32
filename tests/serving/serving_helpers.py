"""Helpers shared by the serving tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

ADMIN_KEY = "test-admin-key"
API_KEY = "test-api-key"


def encode(samples: np.ndarray, sr: int = 16000, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    """Samples (time,) or (time, channels) as an audio file in memory."""
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


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
