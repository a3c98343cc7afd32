"""Review-queue fixtures: a closed URL (Label Studio down) and synthetic review items. The real Label
Studio server (``label_studio``, ``ls_settings``: one per session, skipped loudly only when
``.venv-label-studio`` is absent) is in ``tests/service_fixtures.py``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flywheel.audio import write_audio
from flywheel.processes import free_port
from labeling.items import ReviewItem


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens (Label Studio down)."""
    return f"http://127.0.0.1:{free_port()}"


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
