"""The pseudo-labelled dataset snapshot (``flywheel retrain pseudo-dataset``): confident ``ok`` rows only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from cli.main import app
from flywheel.audio_store import AudioStore
from flywheel.config import REPO_ROOT, get_settings
from flywheel.db import Prediction, make_engine, upgrade
from flywheel.segments import read_rttm, read_uem, turns_of
from flywheel.testset import iter_test_set
from labeling.pseudo_db import insert_rows
from pipelines.pseudo_dataset import snapshot_pseudo

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TURNS = [[0.5, 4.0, "SPEAKER_00"], [3.5, 9.0, "SPEAKER_01"]]


def make_log(root: Path, rows: list[tuple[str, float | None, str, float | None]]) -> tuple[str, Path]:
    """A prediction log with one request per ``(name, seconds of audio or None: purged, status,
    confidence)`` and its pseudo-label row; request id = name."""
    url = f"sqlite:///{root / 'predictions.db'}"
    upgrade(url)
    store = AudioStore(root / "audio")
    predictions, labels = [], []
    for i, (name, seconds, status, confidence) in enumerate(rows):
        if seconds is not None:
            samples = np.random.default_rng(i).uniform(-0.3, 0.3, int(seconds * 16000)).astype(np.float32)
            sha = store.put_samples(samples)
        else:
            sha = f"{i:064x}"
        predictions.append(
            {
                "request_id": name,
                "created_at": T0 + timedelta(minutes=i),
                "client_id": None,
                "arm": "fast-cnn",
                "model_name": "fast-cnn",
                "model_version": "fast-cnn-6",
                "latency_ms": 10.0,
                "audio_duration_s": seconds or 20.0,
                "audio_sha256": sha,
                "segments": [{"start": s, "end": e, "speaker": k} for s, e, k in TURNS],
                "num_speakers": 2,
                "status": "ok",
                "http_status": 200,
                "error": None,
            }
        )
        row = {
            "request_id": name,
            "audio_sha256": sha,
            "status": status,
            "created_at": T0 + timedelta(hours=1, minutes=i),
            "teacher_version": "teacher-pyannote-3.1",
            "error": None,
            **dict.fromkeys(
                ("segments", "num_speakers", "duration_s", "confidence", "segmentation_confidence"), None
            ),
            **dict.fromkeys(("clustering_confidence", "disagreement"), None),
        }
        if status == "ok":
            row |= {
                "segments": TURNS,
                "num_speakers": 2,
                "duration_s": seconds,
                "confidence": confidence,
                "segmentation_confidence": confidence,
                "clustering_confidence": 1.0,
                "disagreement": 0.1,
            }
        else:
            row["error"] = "teacher failed" if status == "error" else "audio not in the store"
        labels.append(row)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Prediction.__table__), predictions)
    insert_rows(engine, labels)
    engine.dispose()
    return url, root / "audio"


def test_snapshot_holds_the_confident_ok_pseudo_labels_with_their_audio(tmp_path: Path) -> None:
    url, audio_dir = make_log(
        tmp_path,
        [
            ("req-a", 12.0, "ok", 0.9),
            ("req-b", 15.0, "ok", 0.75),
            ("req-low", 12.0, "ok", 0.4),  # below the threshold
            ("req-err", 12.0, "error", None),
            ("req-noaudio", None, "missing_audio", None),
            ("req-purged", None, "ok", 0.95),  # labelled, then the store purged its audio
        ],
    )
    out = tmp_path / "pseudo-set"
    report = snapshot_pseudo(url, out, audio_dir, min_confidence=0.7)
    assert report.items == ["req-a", "req-b"] and report.missing_audio == ["req-purged"]
    assert report.below_threshold == 1
    items = {i.uri: i for i in iter_test_set(out)}
    assert set(items) == {"req-a", "req-b"}
    stored = AudioStore(audio_dir)
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["request_id"] for r in manifest] == ["req-a", "req-b"]
    assert (out / "req-a.wav").read_bytes() == stored.path_for(manifest[0]["audio_sha256"]).read_bytes()
    assert [(s.start, s.end) for s in items["req-b"].uem] == [(0.0, 15.0)]  # the whole file
    assert read_uem(out / "req-a.uem")["req-a"]
    assert turns_of(read_rttm(out / "req-a.rttm")["req-a"]) == [tuple(t) for t in TURNS]
    first = manifest[0]
    assert (first["confidence"], first["model_version"], first["teacher_version"]) == (
        0.9,
        "fast-cnn-6",
        "teacher-pyannote-3.1",
    )
    assert first["disagreement"] == 0.1 and first["arm"] == "fast-cnn"
    info = json.loads((out / "dataset.json").read_text())
    assert info["items"] == 2 and info["seconds"] == 27.0 and info["min_confidence"] == 0.7
    assert info["missing_audio"] == ["req-purged"] and info["below_threshold"] == 1
    assert not any(p.name.startswith(("req-err", "req-noaudio", "req-low")) for p in out.iterdir())
    # the same rows give the same bytes (a DVC stage must be deterministic)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    snapshot_pseudo(url, out, audio_dir, min_confidence=0.7)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a lower threshold lets the less confident row in
    assert snapshot_pseudo(url, out, audio_dir, min_confidence=0.3).items == ["req-a", "req-b", "req-low"]


def test_the_stage_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, audio_dir = make_log(tmp_path, [("req-a", 12.0, "ok", 0.9), ("req-low", 12.0, "ok", 0.1)])
    out = tmp_path / "pseudo-set"
    monkeypatch.setenv("FLYWHEEL_PARAMS_FILE", str(REPO_ROOT / "params.yaml"))  # restored after the test
    args = [
        "retrain",
        "pseudo-dataset",
        "--out",
        str(out),
        "--database-url",
        url,
        "--audio-dir",
        str(audio_dir),
    ]
    try:
        result = CliRunner().invoke(app, [*args, "--params", str(REPO_ROOT / "params.yaml")])
        assert result.exit_code == 0, result.output
        assert "1 items, 12.0 s, 1 below confidence 0.7" in result.output
        assert sorted(p.name for p in out.iterdir()) == [
            "dataset.json",
            "manifest.jsonl",
            "req-a.rttm",
            "req-a.uem",
            "req-a.wav",
        ]
        empty = f"sqlite:///{tmp_path / 'empty.db'}"
        missing = CliRunner().invoke(app, [*args[:4], "--database-url", empty, "--audio-dir", str(audio_dir)])
        assert missing.exit_code == 1 and "flywheel pseudo-label" in missing.output
    finally:
        get_settings.cache_clear()
