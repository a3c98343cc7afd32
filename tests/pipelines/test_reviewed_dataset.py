"""The reviewed dataset snapshot (``flywheel retrain dataset``) and what counts as a new review."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cli.main import app
from flywheel.audio_store import AudioStore
from flywheel.segments import read_rttm, read_uem, turns_of
from flywheel.testset import iter_test_set
from labeling.pull import MANIFEST
from pipelines.reviewed_dataset import new_items, snapshot


def record(item: str, audio: Path, offset: float = 0.0, duration: float = 12.0, annotation: int = 1) -> dict:
    """One manifest line as ``flywheel label pull`` writes it."""
    return {
        "key": f"{item}@{int(offset * 1000)}",
        "item_id": item,
        "task_id": 10 + annotation,
        "annotation_id": annotation,
        "offset": offset,
        "duration": duration,
        "reviewer": "reviewer@flywheel.test",
        "reviewed_at": f"2026-12-01T10:00:0{annotation}Z",
        "pulled_at": "2026-12-01T10:05:00+00:00",
        "model_version": "teacher-1",
        "source_audio": str(audio),
        "segments": [[offset + 0.5, offset + 4.0, "Speaker_1"], [offset + 3.5, offset + 9.0, "Speaker_2"]],
    }


def write_manifest(folder: Path, records: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def store(tmp_path: Path, seed: int, seconds: float = 30.0) -> Path:
    samples = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * 16000)).astype(np.float32)
    audio = AudioStore(tmp_path / "audio")
    return audio.path_for(audio.put_samples(samples))


def test_snapshot_is_a_self_contained_evaluation_set(tmp_path: Path) -> None:
    a, b = store(tmp_path, 1), store(tmp_path, 2)
    gone = tmp_path / "audio" / "ff" / f"{'f' * 64}.wav"  # purged from the store
    reviewed = tmp_path / "reviewed"
    write_manifest(
        reviewed,
        [
            record("req-a", a),
            record("req-a", a, offset=15.0, annotation=2),
            record("req-b", b),
            record("req-c", gone),
        ],
    )
    out = tmp_path / "reviewed-set"
    report = snapshot(reviewed, out)
    assert report.items == ["req-a", "req-b"] and report.missing_audio == ["req-c"] and report.tasks == 4
    assert (out / "req-a.wav").read_bytes() == a.read_bytes()  # the audio as it was served
    items = {i.uri: i for i in iter_test_set(out)}
    assert set(items) == {"req-a", "req-b"}
    assert [(s.start, s.end) for s in items["req-a"].uem] == [(0.0, 12.0), (15.0, 27.0)]  # both tasks
    assert turns_of(read_rttm(out / "req-b.rttm")["req-b"]) == [
        (0.5, 4.0, "Speaker_1"),
        (3.5, 9.0, "Speaker_2"),
    ]
    info = json.loads((out / "dataset.json").read_text())
    assert info == {"items": 2, "tasks": 4, "reviewed_s": 36.0, "missing_audio": ["req-c"]}
    # the same reviews give the same bytes (a DVC stage must be deterministic)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    snapshot(reviewed, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert read_uem(out / "req-a.uem")["req-a"]


def test_new_items_are_first_reviews_and_reviews_again(tmp_path: Path) -> None:
    a, b = store(tmp_path, 3), store(tmp_path, 4)
    reviewed, out = tmp_path / "reviewed", tmp_path / "reviewed-set"
    assert new_items(reviewed, out) == []  # nothing pulled
    write_manifest(reviewed, [record("req-a", a), record("req-b", b)])
    assert new_items(reviewed, out) == ["req-a", "req-b"]  # no version yet
    snapshot(reviewed, out)
    assert new_items(reviewed, out) == []
    changed = record("req-b", b, annotation=7)  # req-b reviewed again
    write_manifest(reviewed, [record("req-a", a), changed, record("req-d", a, offset=20.0)])
    assert new_items(reviewed, out) == ["req-b", "req-d"]


def test_audio_found_in_a_moved_store_and_the_stage_command(tmp_path: Path) -> None:
    a = store(tmp_path, 5)
    moved = tmp_path / "moved"
    (tmp_path / "audio").rename(moved)
    reviewed, out = tmp_path / "reviewed", tmp_path / "reviewed-set"
    write_manifest(reviewed, [record("req-a", a)])
    args = ["retrain", "dataset", "--reviewed", str(reviewed), "--out", str(out), "--audio-dir", str(moved)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 items, 1 tasks, 12.0 s reviewed" in result.output
    assert (out / "req-a.wav").read_bytes() == (moved / a.parent.name / a.name).read_bytes()
    missing = CliRunner().invoke(
        app, ["retrain", "dataset", "--reviewed", str(tmp_path / "none"), "--out", str(out)]
    )
    assert missing.exit_code == 1 and "flywheel label pull" in missing.output
