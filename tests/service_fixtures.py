"""The real services the tests run against, shared by every test folder (``pytest_plugins`` of
``tests/conftest.py``): one MLflow server and one Label Studio server per session, and the launcher of
a Ray Serve application on loopback (used by ``tests/serving``'s ``live`` app and the flywheel test).

Session fixtures live until the session ends, so sharing them (instead of one per folder) keeps one
MLflow server (~450 MB) and one Label Studio (~380 MB) for the whole suite.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import REPO_ROOT
from flywheel.processes import free_port
from labeling.client import LabelStudioClient
from labeling.server import ServerConfig as LabelStudioConfig
from labeling.server import start_server, stop_server
from labeling.settings import LabelingSettings

LABEL_STUDIO_VENV = REPO_ROOT / ".venv-label-studio"


# ---------------------------------------------------------------- MLflow


class ServerHandle:
    """A real ``mlflow server`` launched in the background; :attr:`url` waits for ``/health``."""

    def __init__(self, cfg: object, proc: object):
        self.cfg, self.proc, self._ready = cfg, proc, False

    @property
    def url(self) -> str:
        from registry.mlflow_server import wait_healthy

        if not self._ready:
            if not wait_healthy(self.cfg.url, 240.0, self.proc):
                log = self.cfg.log_file.read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not start:\n{log}")
            self._ready = True
        return self.cfg.url


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One real MLflow server on a free loopback port for the whole session, stopped at the end.

    It is launched without waiting, so its slow first start overlaps with whatever fixture comes
    next (list it first in a test's arguments); ``handle.url`` waits until it answers.
    """
    from registry.mlflow_server import ServerConfig, launch, stop_server

    cfg = ServerConfig(port=free_port(), root=tmp_path_factory.mktemp("mlflow-server"))
    handle = ServerHandle(cfg, launch(cfg))
    yield handle
    stop_server(cfg)


# ---------------------------------------------------------------- Label Studio


@dataclass
class LabelStudio:
    """The running test server: its settings (with a per-test project), a client, its start time."""

    settings: LabelingSettings
    config: LabelStudioConfig
    pid: int
    start_s: float

    def client(self, token: str | None = None) -> LabelStudioClient:
        return LabelStudioClient(self.settings.url, token or self.config.creds.token, timeout_s=30.0)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """A real Label Studio from ``.venv-label-studio`` on a free loopback port with a temporary data
    dir (first start about 30 s: migrations), stopped at the end. Skipped (loudly) only when the
    virtualenv is absent: ``bash scripts/setup_label_studio.sh`` (``make test`` runs it)."""
    if not (LABEL_STUDIO_VENV / "bin" / "label-studio").exists():
        reason = (
            f"Label Studio is not installed ({LABEL_STUDIO_VENV} is missing): the review-queue tests did "
            "NOT run; install it with `bash scripts/setup_label_studio.sh`"
        )
        warnings.warn(reason, stacklevel=1)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("label-studio")
    settings = LabelingSettings(
        label_studio_host="127.0.0.1",
        label_studio_port=free_port(),
        label_studio_url=None,
        label_studio_username="reviewer@flywheel.test",
        label_studio_password=secrets.token_urlsafe(12),
        label_studio_token=secrets.token_hex(20),
        label_studio_dir=root,
        label_studio_venv=LABEL_STUDIO_VENV,
        label_studio_media_dir=root / "media",
        label_studio_server_media_dir=None,
        reviewed_dir=root / "reviewed",
    )
    config = LabelStudioConfig.from_settings(settings)
    t0 = time.monotonic()
    pid = start_server(config, timeout_s=240.0)
    server = LabelStudio(settings=settings, config=config, pid=pid, start_s=time.monotonic() - t0)
    try:
        yield server
    finally:
        stop_server(config)


_projects = itertools.count(1)


@pytest.fixture
def ls_settings(label_studio: LabelStudio, tmp_path: Path) -> LabelingSettings:
    """The server's settings with a project of this test's own and a fresh reviewed folder."""
    return label_studio.settings.model_copy(
        update={
            "label_studio_project": f"Review test {next(_projects)}",
            "reviewed_dir": tmp_path / "reviewed",
        }
    )


# ---------------------------------------------------------------- Ray Serve


@contextmanager
def serve_app(config: dict[str, Any], env: Mapping[str, str], direct_min: int) -> Iterator[list[int]]:
    """Start a local loopback Ray with ``env`` in its processes' environment, deploy the Serve
    ``config`` and yield the ingress replicas' direct ports (from ``direct_min``); Serve and Ray are
    shut down and the environment restored afterwards.

    Only one Ray per process: a second app while one runs would replace it (same app name).
    """
    from serving import control

    env = {
        **env,
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(direct_min),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(direct_min + 40),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        control.start_ray(num_cpus=2)
        control.deploy(config, timeout_s=300)
        ports = control.direct_ports(direct_min, count=40)
        assert ports, "the ingress replica did not open its direct port"
        yield ports
    finally:
        t0 = time.monotonic()
        control.shutdown(stop_ray=True)
        print(f"ray shut down in {time.monotonic() - t0:.1f} s")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def copy_smoke_gate_set(smoke_data: Path, gate: Path) -> Path:
    """A three-file gate set in ``gate``: two smoke test conversations and the confirm one (neither the
    dev set nor traffic the tests send), with their RTTM and UEM."""
    import shutil

    gate.mkdir(parents=True, exist_ok=True)
    conversations = smoke_data / "conversations" / "smoke"
    wavs = (
        sorted((conversations / "test").glob("*.wav"))[:2]
        + sorted((conversations / "confirm").glob("*.wav"))[:1]
    )
    for wav in wavs:
        for suffix in (".wav", ".rttm", ".uem"):
            if wav.with_suffix(suffix).exists():
                shutil.copy(wav.with_suffix(suffix), gate / wav.with_suffix(suffix).name)
    return gate
