"""A real Label Studio server for the review-queue tests: started once per session from
``.venv-label-studio`` on a free loopback port with a temporary data dir, stopped at the end.

First start about 30 s (database migrations). Skipped (loudly) only when ``.venv-label-studio`` is
absent: ``bash scripts/setup_label_studio.sh`` installs it, and ``scripts/setup.sh`` (``make test``)
runs that script.
"""

from __future__ import annotations

import itertools
import secrets
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from flywheel.audio import write_audio
from flywheel.config import REPO_ROOT
from labeling.client import LabelStudioClient
from labeling.items import ReviewItem
from labeling.server import ServerConfig, start_server, stop_server
from labeling.settings import LabelingSettings

VENV = REPO_ROOT / ".venv-label-studio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LabelStudio:
    """The running test server: its settings (with a per-test project), a client, its start time."""

    settings: LabelingSettings
    config: ServerConfig
    pid: int
    start_s: float

    def client(self, token: str | None = None) -> LabelStudioClient:
        return LabelStudioClient(self.settings.url, token or self.config.creds.token, timeout_s=30.0)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    if not (VENV / "bin" / "label-studio").exists():
        reason = (
            f"Label Studio is not installed ({VENV} is missing): the review-queue tests did NOT run; "
            "install it with `bash scripts/setup_label_studio.sh`"
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
        label_studio_venv=VENV,
        label_studio_media_dir=root / "media",
        label_studio_server_media_dir=None,
        reviewed_dir=root / "reviewed",
    )
    config = ServerConfig.from_settings(settings)
    t0 = time.monotonic()
    pid = start_server(config, timeout_s=240.0)
    server = LabelStudio(settings=settings, config=config, pid=pid, start_s=time.monotonic() - t0)
    try:
        yield server
    finally:
        stop_server(config)


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens (Label Studio down)."""
    return f"http://127.0.0.1:{free_port()}"


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


@pytest.fixture
def make_item(tmp_path: Path) -> Callable[..., ReviewItem]:
    """A review item over a synthetic recording (noise at ``rate`` Hz) of ``duration`` seconds."""

    def make(item_id: str, duration: float, segments: list, rate: int = 16_000, **kw: object) -> ReviewItem:
        rng = np.random.default_rng(zlib.crc32(item_id.encode()))
        audio = tmp_path / f"{item_id}.wav"
        write_audio(audio, (0.05 * rng.standard_normal(int(duration * rate))).astype(np.float32), rate)
        fields = {"model_version": "teacher-test-1", "score": 0.75, **kw}
        return ReviewItem(item_id, audio, duration, tuple(segments), **fields)  # type: ignore[arg-type]

    return make
