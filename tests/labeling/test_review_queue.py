"""push / pull against a real Label Studio server (the session fixture in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from cli.main import app
from flywheel.segments import read_rttm, read_uem, turns_of
from labeling.client import LabelStudioAuthError, LabelStudioClient, LabelStudioUnavailable
from labeling.items import write_items
from labeling.pull import pull_reviews
from labeling.push import push_items
from labeling.server import running_pid, start_server

SHORT_SEGMENTS = [(0.5, 3.0, "SPK_B"), (2.5, 6.0, "SPK_A"), (7.0, 11.5, "SPK_B")]
LONG_SEGMENTS = [(10.0, 20.0, "A"), (200.0, 215.0, "B"), (500.0, 510.0, "A")]


def _region(start: float, end: float, label: str) -> dict:
    return {
        "from_name": "speaker",
        "to_name": "audio",
        "type": "labels",
        "origin": "manual",
        "value": {"start": start, "end": end, "channel": 0, "labels": [label]},
    }


def _tasks(client: LabelStudioClient, project_id: int) -> list[dict]:
    """Full tasks (data + predictions), in offset order."""
    ids = [t["id"] for t in client.tasks(project_id)]
    full = [client.request("GET", f"/api/tasks/{i}") for i in ids]
    return sorted(full, key=lambda t: (t["data"]["item_id"], t["data"]["offset"]))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_server_started_on_loopback_and_start_is_idempotent(label_studio) -> None:
    assert label_studio.settings.url.startswith("http://127.0.0.1:")
    assert running_pid(label_studio.config) == label_studio.pid
    assert start_server(label_studio.config, timeout_s=10) == label_studio.pid  # no second server
    with label_studio.client() as client:
        assert client.whoami()["email"] == "reviewer@flywheel.test"
    print(f"Label Studio came up in {label_studio.start_s:.1f} s")


def test_push_creates_tasks_with_pre_annotations(label_studio, ls_settings, make_item) -> None:
    item = make_item("short-1", 12.0, SHORT_SEGMENTS, score=0.61)
    with label_studio.client() as client:
        report = push_items([item], client, ls_settings)
        assert report.created == ["short-1@0"] and report.skipped == []
        project = client.get_project(report.project_id)
        assert project["title"] == ls_settings.label_studio_project
        (task,) = _tasks(client, report.project_id)
        assert task["data"]["offset"] == 0.0 and task["data"]["duration"] == 12.0
        assert task["data"]["speakers"] == {"Speaker 1": "SPK_B", "Speaker 2": "SPK_A"}
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "teacher-test-1"
        assert prediction["score"] == pytest.approx(0.61)
        got = [(r["value"]["start"], r["value"]["end"], r["value"]["labels"]) for r in prediction["result"]]
        assert got == [(0.5, 3.0, ["Speaker 1"]), (2.5, 6.0, ["Speaker 2"]), (7.0, 11.5, ["Speaker 1"])]
        assert all(r["from_name"] == "speaker" and r["to_name"] == "audio" for r in prediction["result"])
        # the clip is served to the browser through the local-files storage
        audio = client._http.get(task["data"]["audio"])
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        assert len(audio.content) == 44 + 2 * 12 * 16_000


def test_second_push_adds_nothing(label_studio, ls_settings, make_item) -> None:
    items = [make_item("again-1", 8.0, [(1.0, 4.0, "x")]), make_item("again-2", 9.0, [(0.0, 2.0, "y")])]
    with label_studio.client() as client:
        first = push_items(items, client, ls_settings)
        second = push_items(items, client, ls_settings)
        assert sorted(first.created) == ["again-1@0", "again-2@0"]
        assert second.created == [] and sorted(second.skipped) == ["again-1@0", "again-2@0"]
        assert len(list(client.tasks(first.project_id))) == 2
        assert second.project_id == first.project_id  # the project is reused, not created again


def test_push_budget_limits_new_items(label_studio, ls_settings, make_item) -> None:
    items = [make_item(f"budget-{i}", 5.0, [(1.0, 2.0, "s")]) for i in range(3)]
    with label_studio.client() as client:
        assert push_items(items, client, ls_settings, budget=2).created == ["budget-0@0", "budget-1@0"]
        assert push_items(items, client, ls_settings, budget=2).created == ["budget-2@0"]


def test_long_item_is_split_with_offsets(label_studio, ls_settings, make_item) -> None:
    item = make_item("long-1", 620.0, LONG_SEGMENTS, rate=8_000)  # 8 kHz: clips are resampled
    with label_studio.client() as client:
        report = push_items([item], client, ls_settings)
        tasks = _tasks(client, report.project_id)
    assert report.created == ["long-1@0", "long-1@206667", "long-1@413333"]
    assert [t["data"]["offset"] for t in tasks] == [0.0, 206.667, 413.333]
    assert all(t["data"]["duration"] <= 300.0 for t in tasks)
    got = [
        [
            (r["value"]["start"], r["value"]["end"], r["value"]["labels"][0])
            for r in t["predictions"][0]["result"]
        ]
        for t in tasks
    ]
    assert got == [
        [(10.0, 20.0, "Speaker 1"), (200.0, 206.667, "Speaker 2")],
        [(0.0, 8.333, "Speaker 2")],
        [(86.667, 96.667, "Speaker 1")],
    ]
    for task in tasks:
        clip = ls_settings.media_dir / "audio" / "long-1" / f"{round(task['data']['offset'] * 1000)}.wav"
        info = sf.info(str(clip))
        assert info.samplerate == 16_000 and info.channels == 1
        assert info.frames / info.samplerate == pytest.approx(task["data"]["duration"], abs=1e-3)


def test_review_then_pull_writes_rttm_and_uem(label_studio, ls_settings, make_item) -> None:
    short = make_item("rev-short", 12.0, SHORT_SEGMENTS)
    long = make_item("rev-long", 620.0, LONG_SEGMENTS, rate=8_000)
    with label_studio.client() as client:
        report = push_items([short, long], client, ls_settings)
        by_key = {t["data"]["key"]: t for t in _tasks(client, report.project_id)}
        # reviewers: accept + fix the short item, fix the middle of the long one, skip its last part
        client.create_annotation(
            by_key["rev-short@0"]["id"],
            [_region(0.5, 3.2, "Speaker 1"), _region(2.5, 6.0, "Speaker 2"), _region(7.0, 11.5, "Speaker 1")],
            lead_time=12.5,
        )
        middle = client.create_annotation(
            by_key["rev-long@206667"]["id"],
            [_region(0.0, 8.333, "Speaker 2"), _region(50.0, 60.0, "Speaker 3")],
        )
        client.create_annotation(by_key["rev-long@413333"]["id"], [], was_cancelled=True)
        out = ls_settings.reviewed_dir
        pulled = pull_reviews(client, ls_settings)
        assert sorted(pulled.added) == ["rev-long@206667", "rev-short@0"]
        rttm = read_rttm(out / "rttm" / "rev-long.rttm")["rev-long"]
        assert turns_of(rttm) == [
            (206.667, pytest.approx(215.0), "Speaker_2"),
            (256.667, pytest.approx(266.667), "Speaker_3"),
        ]
        (span,) = read_uem(out / "uem" / "rev-long.uem")["rev-long"]  # only the reviewed task's span
        assert (span.start, span.end) == (206.667, 413.333)
        short_turns = turns_of(read_rttm(out / "rttm" / "rev-short.rttm")["rev-short"])
        assert [(s, round(e, 3), spk) for s, e, spk in short_turns] == [
            (0.5, 3.2, "Speaker_1"),
            (2.5, 6.0, "Speaker_2"),
            (7.0, 11.5, "Speaker_1"),
        ]
        assert (out / "uem" / "rev-short.uem").read_text() == "rev-short 1 0.000 12.000\n"
        manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert [(r["item_id"], r["offset"]) for r in manifest] == [("rev-long", 206.667), ("rev-short", 0.0)]
        assert {r["reviewer"] for r in manifest} == {"reviewer@flywheel.test"}
        assert manifest[0]["task_id"] == by_key["rev-long@206667"]["id"]
        assert all(
            r["reviewed_at"] and r["pulled_at"] and r["model_version"] == "teacher-test-1" for r in manifest
        )

        before = _snapshot(out)
        again = pull_reviews(client, ls_settings)
        assert again.added == [] and again.updated == [] and again.files_written == []
        assert _snapshot(out) == before  # idempotent: not a byte changed

        # a reviewer edits the annotation: the next pull updates that item only
        client.request(
            "PATCH", f"/api/annotations/{middle['id']}", json={"result": [_region(1.0, 8.0, "Speaker 2")]}
        )
        updated = pull_reviews(client, ls_settings)
        assert updated.updated == ["rev-long@206667"] and updated.added == []
        assert {p.name for p in updated.files_written} == {"rev-long.rttm", "manifest.jsonl"}
        assert turns_of(read_rttm(out / "rttm" / "rev-long.rttm")["rev-long"]) == [
            (207.667, pytest.approx(214.667), "Speaker_2")
        ]


def test_pull_with_server_down_writes_nothing(ls_settings, closed_url: str) -> None:
    down = ls_settings.model_copy(update={"label_studio_url": closed_url})
    with (
        LabelStudioClient(down.url, "0" * 40, timeout_s=5) as client,
        pytest.raises(LabelStudioUnavailable, match="not reachable"),
    ):
        pull_reviews(client, down)
    assert not down.reviewed_dir.exists()

    result = CliRunner().invoke(app, ["label", "pull"], env=_cli_env(down))
    assert result.exit_code == 1, result.output
    assert "pull failed, nothing written" in result.output and "not reachable" in result.output
    assert not down.reviewed_dir.exists()


def test_pull_with_wrong_token_writes_nothing(label_studio, ls_settings, make_item) -> None:
    with label_studio.client() as client:
        report = push_items([make_item("tok-1", 6.0, [(1.0, 2.0, "a")])], client, ls_settings)
        (task,) = _tasks(client, report.project_id)
        client.create_annotation(task["id"], [_region(1.0, 2.5, "Speaker 1")])
        pull_reviews(client, ls_settings)
        client.create_annotation(task["id"], [_region(1.0, 3.0, "Speaker 1")])  # a newer review, not pulled
    before = _snapshot(ls_settings.reviewed_dir)
    assert "rttm/tok-1.rttm" in before
    with (
        label_studio.client(token="0" * 40) as bad,
        pytest.raises(LabelStudioAuthError, match="refused the API token"),
    ):
        pull_reviews(bad, ls_settings)
    assert _snapshot(ls_settings.reviewed_dir) == before

    env = _cli_env(ls_settings, FLYWHEEL_LABEL_STUDIO_TOKEN="0" * 40)
    result = CliRunner().invoke(app, ["label", "pull"], env=env)
    assert result.exit_code == 1, result.output
    assert "refused the API token" in result.output and "nothing written" in result.output
    assert _snapshot(ls_settings.reviewed_dir) == before


def test_cli_push_twice(label_studio, ls_settings, make_item, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    write_items(items, [make_item("cli-1", 7.0, [(0.5, 5.0, "S0"), (4.0, 6.5, "S1")])])
    env = _cli_env(ls_settings)
    first = CliRunner().invoke(app, ["label", "push", "--items", str(items)], env=env)
    assert first.exit_code == 0, first.output
    assert "1 new tasks from 1 items, 0 already there" in first.output
    second = CliRunner().invoke(app, ["label", "push", "--items", str(items)], env=env)
    assert second.exit_code == 0, second.output
    assert "0 new tasks from 0 items, 1 already there" in second.output


def _cli_env(settings, **extra: str) -> dict[str, str]:
    """Environment that points the ``flywheel label`` CLI at the test server and folders."""
    env = {
        "FLYWHEEL_LABEL_STUDIO_URL": settings.url,
        "FLYWHEEL_LABEL_STUDIO_TOKEN": settings.label_studio_token,
        "FLYWHEEL_LABEL_STUDIO_PASSWORD": settings.label_studio_password,
        "FLYWHEEL_LABEL_STUDIO_PROJECT": settings.label_studio_project,
        "FLYWHEEL_LABEL_STUDIO_DIR": str(settings.label_studio_dir),
        "FLYWHEEL_LABEL_STUDIO_MEDIA_DIR": str(settings.media_dir),
        "FLYWHEEL_REVIEWED_DIR": str(settings.reviewed_dir),
    }
    env.update(extra)
    return env


def test_push_with_server_down_is_a_clear_error(
    ls_settings, closed_url: str, make_item, tmp_path: Path
) -> None:
    items = tmp_path / "items.jsonl"
    write_items(items, [make_item("down-1", 3.0, [(0.0, 1.0, "a")])])
    down = ls_settings.model_copy(update={"label_studio_url": closed_url})
    result = CliRunner().invoke(app, ["label", "push", "--items", str(items)], env=_cli_env(down))
    assert result.exit_code == 1, result.output
    assert "push failed" in result.output and "flywheel label serve" in result.output
    assert not (down.media_dir / "audio" / "down-1").exists()  # nothing written before the server answers
