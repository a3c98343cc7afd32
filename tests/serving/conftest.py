"""Serving fixtures: test audio, an in-process (no Ray) app, and one live Ray Serve app per session.

The live app runs two arms (``fast-cnn`` and ``distilhubert``) on the ``smoke_onnx`` model and the
real ``teacher`` (weight 0, its shipped limits: the overload test drives it past them), bound to
127.0.0.1, in the throughput-optimised mode; it is shut down (Ray included) at the end of the session.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import ADMIN_KEY, API_KEY, encode


@pytest.fixture(scope="session")
def speech(smoke_data: Path) -> np.ndarray:
    """A 16 kHz conversation from the smoke test set (tens of seconds)."""
    from flywheel.audio import load_audio

    wav = sorted((smoke_data / "conversations" / "smoke" / "test").glob("*.wav"))[0]
    return load_audio(wav)


@pytest.fixture(scope="session")
def clip10(speech: np.ndarray) -> bytes:
    """10 s of conversation as 16-bit WAV."""
    return encode(speech[: 10 * 16000])


@pytest.fixture(scope="session")
def clip1(speech: np.ndarray) -> bytes:
    """1 s of speech (cheap requests for the routing statistics)."""
    start = int(np.argmax(np.abs(speech) > 0.05))
    return encode(speech[start : start + 16000])


def free_port(low: int = 20000, high: int = 29000) -> int:
    """A free loopback TCP port outside Ray's worker range (10002-19999)."""
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@dataclass
class LiveApp:
    """A running Serve app: proxy URL, direct ingress URL, runtime dir, the model files."""

    proxy: str
    direct: str
    runtime: Path
    reload_model: Path  # the distilhubert arm's file (replace it to trigger a hot reload)


@pytest.fixture(scope="session")
def live(smoke_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """One Ray Serve app for the session (about 30-60 s to start on two busy cores)."""
    pytest.importorskip("ray.serve")
    from serving import control

    runtime = tmp_path_factory.mktemp("serve-runtime")
    reload_model = runtime / "distilhubert.onnx"
    shutil.copy(smoke_onnx, reload_model)
    port = free_port()
    direct_min = random.randint(30100, 30800)
    env = {
        "FLYWHEEL_RUNTIME_DIR": str(runtime),
        "FLYWHEEL_ADMIN_KEY": ADMIN_KEY,
        "FLYWHEEL_API_KEYS": f"{API_KEY},other-key",
        "FLYWHEEL_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
        "FLYWHEEL_MAX_DURATION_S": "60",
        "FLYWHEEL_UPLOAD_TIMEOUT_S": "10",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(direct_min),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(direct_min + 40),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    config = control.load_config()
    config["http_options"]["port"] = port
    app = config["applications"][0]
    app["args"]["embed_arms"] = False  # one deployment per arm (embedded arms: test_api.py, benchmarks)
    teacher = dict(app["args"]["arms"]["teacher"], poll_s=0)  # the shipped limits (test_overload.py)
    app["args"]["arms"] = {
        "teacher": teacher,
        "fast-cnn": {"model_path": str(smoke_onnx), "poll_s": 0, "deployment": {"num_replicas": 1}},
        "distilhubert": {
            "model_name": "fast-cnn",
            "model_path": str(reload_model),
            "poll_s": 1,
            "deployment": {"num_replicas": 1},
        },
    }
    app["deployments"][0]["user_config"] = {"weights": {"fast-cnn": 0.5, "distilhubert": 0.5}}
    try:
        control.start_ray(num_cpus=2)
        control.deploy(config, timeout_s=300)
        ports = control.direct_ports(direct_min, count=40)
        assert ports, "the ingress replica did not open its direct port"
        yield LiveApp(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ports[0]}", runtime, reload_model)
    finally:
        t0 = time.monotonic()
        control.shutdown(stop_ray=True)
        print(f"ray shut down in {time.monotonic() - t0:.1f} s")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
