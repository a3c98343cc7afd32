"""Serving fixtures: test audio, an in-process (no Ray) app, and one live Ray Serve app per session.

The live app runs two arms (``fast-cnn`` and ``distilhubert``) on the ``smoke_onnx`` model and the
real ``teacher`` (weight 0, its shipped limits: the overload test drives it past them), in the shipped
topology (``fast-cnn`` inside the one ingress replica, the others in their deployments), bound to
127.0.0.1, in the throughput-optimised mode. It is shut down (Ray included) as soon as the last test
under ``tests/serving/`` has run (:func:`pytest_runtest_teardown`), not at the end of the session: left
running, its replicas kept two cores busy enough that the Ray job test's own head (tests/training) did
not register its raylet within Ray's fixed 30 s (CI, twice).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from service_fixtures import serve_app
from serving_helpers import ADMIN_KEY, API_KEY, LiveApp, encode


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


SERVING_TESTS = Path(__file__).parent
_live_stack = contextlib.ExitStack()  # the live app's serve_app context, closed by the hook below


@pytest.hookimpl(trylast=True)  # after the item's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the live app after the last test of this directory (pytest keeps a directory's tests together)."""
    if nextitem is None or not nextitem.path.is_relative_to(SERVING_TESTS):
        _live_stack.close()


@pytest.fixture(scope="session")
def live(smoke_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """One Ray Serve app for the serving tests (about 30-60 s to start on two busy cores)."""
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
    }
    config = control.load_config()
    config["http_options"]["port"] = port
    app = config["applications"][0]
    assert app["args"]["embed_arms"] == ["fast-cnn"]  # the shipped topology: fast-cnn in the ingress,
    app["deployments"][0]["num_replicas"] = 1  # the others deployed; one ingress (its direct port)
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
    ports = _live_stack.enter_context(serve_app(config, env, direct_min))
    try:
        yield LiveApp(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ports[0]}", runtime, reload_model)
    finally:
        _live_stack.close()  # a no-op after the hook; closes it when a run stops early (-x, Ctrl-C)
