"""A temporary prediction log with real 2-speaker clips (LibriSpeech) for the pseudo-label tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from flywheel.audio import SAMPLE_RATE, load_audio
from flywheel.audio_store import AudioStore
from flywheel.config import get_settings
from flywheel.db import Prediction, make_engine, upgrade

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def librispeech(name: str) -> np.ndarray:
    path = get_settings().shared_data_dir / "librispeech-251" / name
    return load_audio(path)


def two_speaker_clip(a: str, b: str, seconds: float = 20.0) -> tuple[np.ndarray, list]:
    """``a`` 0-8 s, ``b`` 8-14 s, ``a`` again to ``seconds``: the turns as (start, end, speaker)."""
    x, y = librispeech(a), librispeech(b)
    s = SAMPLE_RATE
    parts = [x[: 8 * s], y[: 6 * s], x[8 * s : 8 * s + int((seconds - 14) * s)]]
    wave = np.concatenate(parts).astype(np.float32)
    return wave, [(0.0, 8.0, "A"), (8.0, 14.0, "B"), (14.0, len(wave) / s, "A")]


@dataclass
class Log:
    """The temporary log: database URL, audio store, request ids by name."""

    url: str
    audio_dir: Path
    ids: dict[str, str]


def make_log(root: Path, items: list[tuple[str, np.ndarray | None, list, str, int]]) -> Log:
    """``(name, waveform or None (audio not stored), served turns, arm, minutes after T0)`` rows."""
    url = f"sqlite:///{root / 'predictions.db'}"
    upgrade(url)
    store = AudioStore(root / "audio")
    rows, ids = [], {}
    for i, (name, wave, served, arm, minutes) in enumerate(items):
        sha = store.put_samples(wave) if wave is not None else f"{i:064x}"
        request_id = f"00000000-0000-4000-8000-{i:012d}"
        ids[name] = request_id
        rows.append(
            {
                "request_id": request_id,
                "created_at": T0 + timedelta(minutes=minutes),
                "client_id": None,
                "arm": arm,
                "model_name": arm,
                "model_version": f"{arm}-1",
                "latency_ms": 10.0 + i,
                "audio_duration_s": (len(wave) / SAMPLE_RATE) if wave is not None else 20.0,
                "audio_sha256": sha,
                "segments": [{"start": s, "end": e, "speaker": k} for s, e, k in served],
                "num_speakers": len({k for _, _, k in served}),
                "status": "ok",
                "http_status": 200,
                "error": None,
            }
        )
    if rows:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(insert(Prediction.__table__), rows)
        engine.dispose()
    return Log(url, root / "audio", ids)
