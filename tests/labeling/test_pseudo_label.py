"""``flywheel pseudo-label``: the real teacher over a temporary SQLite log of real 2-speaker clips.

Clips are ~20 s of two LibriSpeech speakers (A 0-8 s, B 8-14 s, A to the end); the teacher costs
about 1-3 s per clip here. Local mode (no Ray) except one test through a real embedded Ray.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from cli.main import app
from flywheel.db import make_engine
from flywheel.segments import read_rttm
from labeling.pseudo_db import pseudo_labels
from labeling.pseudo_label import (
    Job,
    label_job,
    parse_since,
    run_pseudo_labels,
    segmentation_confidence,
)

sys.path.insert(0, str(Path(__file__).parent))
from pseudo_fixtures import T0, make_log, two_speaker_clip


@pytest.fixture(scope="module")
def clips() -> dict[str, tuple[np.ndarray, list]]:
    return {
        "ab": two_speaker_clip("103-1240-0000.flac", "1034-121119-0000.flac"),
        "cd": two_speaker_clip("1040-133433-0000.flac", "1069-133699-0000.flac"),
        "ef": two_speaker_clip("1081-125237-0000.flac", "1088-129236-0000.flac"),
    }


def _rows(url: str) -> dict[str, dict]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = {r["request_id"]: dict(r) for r in conn.execute(select(pseudo_labels)).mappings()}
    engine.dispose()
    return rows


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.glob("*.rttm"))}


def test_local_run_stores_rttm_confidence_disagreement_then_does_nothing(clips, tmp_path: Path) -> None:
    ab, truth = clips["ab"]
    cd, _ = clips["cd"]
    log = make_log(
        tmp_path,
        [
            ("good", ab, truth, "fast-cnn", 0),  # served what was said
            ("bad", cd, [(0.0, 20.0, "X")], "distilhubert", 1),  # one speaker over everything
            ("dup", ab, [(0.0, 20.0, "X")], "distilhubert", 2),  # same audio as "good"
            ("gone", None, truth, "fast-cnn", 3),  # audio purged from the store
        ],
    )
    out = tmp_path / "pl"
    report = run_pseudo_labels(log.url, log.audio_dir, out, local=True, progress=False)
    assert (report.pending, report.labelled, report.missing_audio, report.failed) == (4, 3, 1, 0)
    assert report.teacher_runs == 2  # "dup" reuses the teacher output of "good" (same audio)

    rows = _rows(log.url)
    good, bad, dup = (rows[log.ids[k]] for k in ("good", "bad", "dup"))
    assert rows[log.ids["gone"]]["status"] == "missing_audio"
    for row in (good, bad, dup):
        assert row["status"] == "ok" and row["teacher_version"].startswith("teacher-")
        assert row["num_speakers"] == 2  # the teacher hears both LibriSpeech voices
        assert 0.5 < row["confidence"] <= 1.0
        assert row["confidence"] == pytest.approx(
            row["segmentation_confidence"] * row["clustering_confidence"]
        )
        assert abs(row["duration_s"] - 20.0) < 0.01
        rttm = read_rttm(row["rttm_path"])
        assert list(rttm) == [row["request_id"]] and Path(row["rttm_path"]).parent == out
        assert len(rttm[row["request_id"]].labels()) == 2
        parts = row["missed_s"] + row["false_alarm_s"] + row["confusion_s"]
        assert row["disagreement"] == pytest.approx(parts / row["reference_speech_s"])
    assert dup["segments"] == good["segments"]
    # one speaker served for two: a third or more of the teacher's speech is confused
    assert bad["disagreement"] > good["disagreement"] + 0.15
    assert dup["disagreement"] > good["disagreement"] + 0.15
    assert bad["confusion_s"] > 4.0 and good["confusion_s"] < 1.0

    before = _snapshot(out)
    again = run_pseudo_labels(log.url, log.audio_dir, out, local=True, progress=False)
    assert (again.pending, again.labelled, again.teacher_runs) == (0, 0, 0)
    assert _snapshot(out) == before and _rows(log.url) == rows

    retry = run_pseudo_labels(log.url, log.audio_dir, out, local=True, progress=False, retry_errors=True)
    assert (retry.pending, retry.missing_audio, retry.labelled) == (1, 1, 0)


def test_since_and_limit_choose_what_is_labelled(tmp_path: Path) -> None:
    # requests without stored audio cost no teacher run: they only get a `missing_audio` row
    log = make_log(tmp_path, [(f"r{i}", None, [(0.0, 1.0, "a")], "fast-cnn", 10 * i) for i in range(5)])
    out = tmp_path / "pl"
    first = run_pseudo_labels(log.url, log.audio_dir, out, local=True, progress=False, limit=2)
    assert first.pending == 2 and set(_rows(log.url)) == {log.ids["r0"], log.ids["r1"]}  # oldest first
    since = T0 + timedelta(minutes=30)
    second = run_pseudo_labels(log.url, log.audio_dir, out, local=True, progress=False, since=since)
    assert second.pending == 2 and set(_rows(log.url)) == {log.ids[f"r{i}"] for i in (0, 1, 3, 4)}
    assert parse_since("2026-11-20T12:30:00+01:00") == T0 + timedelta(minutes=-30)


def test_resumes_after_the_run_is_killed(clips, tmp_path: Path) -> None:
    log = make_log(tmp_path, [(k, w, t, "fast-cnn", i) for i, (k, (w, t)) in enumerate(clips.items())])
    out = tmp_path / "pl"
    args = [
        "pseudo-label",
        "--local",
        "--no-progress",
        "--database-url",
        log.url,
        "--audio-dir",
        str(log.audio_dir),
        "--out-dir",
        str(out),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cli.main import app; app()", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    engine = make_engine(log.url)
    deadline = time.monotonic() + 180
    done = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with engine.connect() as conn:
                    done = conn.execute(text("SELECT count(*) FROM pseudo_labels")).scalar_one()
            except Exception:  # the table is being created by the child's migration
                done = 0
            if done:
                os.killpg(proc.pid, signal.SIGKILL)  # mid-run: at least one item left
                break
            time.sleep(0.05)
        proc.wait(timeout=30)
    finally:
        engine.dispose()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""
    first = _rows(log.url)
    assert 1 <= len(first) < 3
    resumed = run_pseudo_labels(log.url, log.audio_dir, out, local=True, progress=False)
    assert resumed.pending == 3 - len(first) and resumed.labelled == resumed.teacher_runs == 3 - len(first)
    rows = _rows(log.url)
    assert set(rows) == set(log.ids.values()) and all(r["status"] == "ok" for r in rows.values())
    assert all(rows[k] == v for k, v in first.items())  # what the killed run stored is kept as it was
    names = sorted(p.stem for p in out.glob("*.rttm") if not p.name.startswith("."))
    assert names == sorted(log.ids.values())


def test_ray_tasks_on_embedded_ray_give_the_local_result(clips, tmp_path: Path, monkeypatch) -> None:
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    wave, truth = clips["ab"]
    log = make_log(tmp_path, [("a", wave, truth, "fast-cnn", 0), ("b", wave, [(0.0, 9.0, "x")], "x", 1)])
    report = run_pseudo_labels(log.url, log.audio_dir, tmp_path / "pl", num_cpus=1, progress=False)
    assert report.mode == "embedded ray (127.0.0.1)" and not ray.is_initialized()  # shut down after
    assert (report.labelled, report.teacher_runs) == (2, 1)
    rows = _rows(log.url)
    engine = make_engine(log.url)
    from labeling.pseudo_db import pending_items

    with engine.begin() as conn:
        conn.execute(pseudo_labels.delete())
    items = pending_items(engine)
    engine.dispose()
    local = label_job(
        Job(
            items[0].audio_sha256,
            (log.audio_dir / items[0].audio_sha256[:2] / f"{items[0].audio_sha256}.wav").read_bytes(),
            items,
        )
    )
    for row in local:
        ray_row = rows[row["request_id"]]
        assert ray_row["segments"] == row["segments"]
        for key in ("confidence", "disagreement", "confusion_s"):
            assert ray_row[key] == pytest.approx(row[key], abs=1e-9)


def test_cli_runs_and_reports(tmp_path: Path) -> None:
    log = make_log(tmp_path, [("x", None, [(0.0, 1.0, "a")], "fast-cnn", 0)])
    args = [
        "pseudo-label",
        "--local",
        "--no-progress",
        "--database-url",
        log.url,
        "--audio-dir",
        str(log.audio_dir),
        "--out-dir",
        str(tmp_path / "pl"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 pending: 0 labelled" in result.output and "1 without audio" in result.output
    same = CliRunner().invoke(app, ["label", *args])  # the same command under `flywheel label`
    assert same.exit_code == 0 and "0 pending" in same.output
    bad = CliRunner().invoke(app, [*args, "--since", "yesterday"])
    assert bad.exit_code == 1 and "--since" in bad.output


def test_segmentation_confidence_is_one_when_decided_and_lower_when_not() -> None:
    class Local:
        chunk_frames = np.array([0, 2])
        num_frames = 6

    sure = Local()
    sure.probabilities = np.zeros((2, 4, 3), dtype=np.float16)
    sure.probabilities[:, :, 0] = 1.0
    assert segmentation_confidence(sure) == pytest.approx(1.0)
    unsure = Local()
    unsure.probabilities = np.zeros((2, 4, 3), dtype=np.float16)
    unsure.probabilities[:, :, 1] = 0.5  # a coin flip per frame
    assert segmentation_confidence(unsure) == pytest.approx(0.5)
    silent = Local()
    silent.probabilities = np.zeros((2, 4, 3), dtype=np.float16)
    assert segmentation_confidence(silent) == 1.0


def test_row_count_matches_requests(tmp_path: Path) -> None:
    """The table's migration is part of the serving database's head."""
    from flywheel.db.migrate import current

    log = make_log(tmp_path, [])
    assert current(log.url) == "0002_pseudo_labels"
    engine = make_engine(log.url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pseudo_labels)).scalar_one() == 0
    engine.dispose()


def test_clustering_confidence_drops_when_windows_sit_between_speakers() -> None:
    from pyannote.core import Annotation

    from labeling.pseudo_label import clustering_confidence

    rng = np.random.default_rng(0)
    a, b = np.eye(8)[0], np.eye(8)[1]

    class Local:
        window_frames = np.array([[i, i + 1] for i in range(20)])

    labels = np.array([0] * 10 + [1] * 10)  # the teacher's clusters (SpeakerAssignment.window_labels)
    clear = Local()
    clear.window_embeddings = np.stack([a] * 10 + [b] * 10) + 0.01 * rng.standard_normal((20, 8))
    assert clustering_confidence(clear, Annotation(), 0.1, labels) == 1.0
    mixed = Local()  # 4 windows of speaker 0 sound like speaker 1: a clustering mistake
    mixed.window_embeddings = np.stack([a] * 6 + [b] * 4 + [b] * 10) + 0.01 * rng.standard_normal((20, 8))
    assert clustering_confidence(mixed, Annotation(), 0.1, labels) == pytest.approx(16 / 20)
    one = Local()
    one.window_embeddings = mixed.window_embeddings
    one_speaker = np.zeros(20, dtype=int)
    assert clustering_confidence(one, Annotation(), 0.1, one_speaker) == 1.0  # nothing to confuse
