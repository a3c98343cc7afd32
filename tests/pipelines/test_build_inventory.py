"""Build the smoke inventory end to end (seconds) and check its on-disk format and invariants."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from flywheel.config import load_params
from pipelines.build_inventory import app, build_inventory, pitch_shift, speaker_slug
from pipelines.inventory import SPLITS, Inventory
from pipelines.speech_activity import speech_duration

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    out = tmp_path_factory.mktemp("inv") / "smoke"
    return build_inventory("smoke", out, workers=2, progress=False, skip_missing_sources=True)


def test_files_and_metadata(smoke: Inventory) -> None:
    root = smoke.root
    for name in ("utterances.jsonl", "speakers.csv", "splits.json", "summary.json"):
        assert (root / name).is_file()
    assert not (root / ".building").exists()
    loaded = Inventory.load(root)
    assert len(loaded.utterances) == len(smoke.utterances) > 0
    params = load_params()["profiles"]["smoke"]["inventory"]
    assert {u.source for u in loaded.utterances} <= set(params["sources"])
    for utt in loaded.utterances:
        path = root / utt.path
        assert path.parts[-3:] == (utt.source, speaker_slug(utt.speaker), f"{utt.utt_id}.flac")
        info = sf.info(str(path))
        assert info.samplerate == 16_000 and info.channels == 1 and info.subtype == "PCM_16"
        assert info.frames / 16_000 == pytest.approx(utt.duration, abs=1e-3)
        assert utt.split == loaded.speakers[utt.speaker].split


def test_speech_intervals_are_tight_and_trimmed(smoke: Inventory) -> None:
    for utt in smoke.utterances:
        speech = utt.speech
        assert speech, utt.utt_id
        assert all(0 <= s < e <= utt.duration + 1e-6 for s, e in speech)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(speech))
        assert speech[0][0] <= 0.1 + 1e-3
        assert utt.duration - speech[-1][1] <= 0.1 + 1e-3
        assert speech_duration(speech) >= 0.3


def test_levels_are_normalized(smoke: Inventory) -> None:
    for utt in smoke.utterances[:10]:
        x = utt.load(smoke.root)
        assert np.max(np.abs(x)) <= 0.9
        assert np.max(np.abs(x)) > 0.05


def test_splits(smoke: Inventory) -> None:
    splits = json.loads((smoke.root / "splits.json").read_text())
    assert splits == {s: spk.split for s, spk in smoke.speakers.items()}
    summary = smoke.summary()
    for split in SPLITS:
        assert summary[split]["speakers"] > 0
    by_split: dict[str, set[str]] = {s: set() for s in SPLITS}
    for utt in smoke.utterances:
        by_split[utt.split].add(utt.speaker)
    assert not (by_split["train"] & by_split["dev"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["dev"] & by_split["test"])


def test_rebuild_is_deterministic_and_fresh(smoke: Inventory, tmp_path: Path) -> None:
    out = tmp_path / "again"
    out.mkdir()
    (out / "audio").mkdir()
    (out / "audio" / "stale.flac").write_bytes(b"x")
    again = build_inventory("smoke", out, workers=1, progress=False, skip_missing_sources=True)
    assert not (out / "audio" / "stale.flac").exists()
    assert [(u.utt_id, u.speech, u.split) for u in again.utterances] == [
        (u.utt_id, u.speech, u.split) for u in smoke.utterances
    ]


def test_refuses_to_delete_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_inventory("smoke", tmp_path, progress=False)
    assert (tmp_path / "precious.txt").exists()


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_pitch_shifted_pseudo_speakers(tmp_path: Path) -> None:
    params = copy.deepcopy(load_params())
    params["profiles"]["smoke"]["inventory"].update(
        sources=["espeak"],
        max_speakers_per_source=3,
        utterances_per_tts_speaker=2,
        pitch_shift_cents=[-500, 500],
    )
    inv = build_inventory("smoke", tmp_path / "inv", params=params, workers=1, progress=False)
    parents = [s for s in inv.speakers.values() if not s.parent]
    children = [s for s in inv.speakers.values() if s.parent]
    assert len(parents) == 3 and len(children) == 6
    for child in children:
        assert child.split == inv.speakers[child.parent].split
        assert child.speaker in (f"{child.parent}@-500c", f"{child.parent}@+500c")
    by_id = {u.utt_id: u for u in inv.utterances}
    for utt in inv.utterances:
        if utt.speaker.endswith("c") and "@" in utt.speaker:
            parent_utt = by_id[utt.utt_id.rsplit(".", 1)[0]]
            assert utt.duration == pytest.approx(parent_utt.duration, abs=0.25)


def test_pitch_shift_keeps_duration() -> None:
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    t = np.arange(16_000) / 16_000
    x = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    y = pitch_shift(x, 500)
    assert len(y) == len(x)
    spectrum = np.abs(np.fft.rfft(y[4000:12000]))
    assert 250 < np.argmax(spectrum) * 2 < 290  # 200 Hz * 2 ** (500 / 1200) = 267 Hz


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "--profile" in result.output
    result = runner.invoke(
        app,
        [
            "--profile",
            "smoke",
            "--out-dir",
            str(tmp_path / "cli"),
            "--workers",
            "1",
            "--no-progress",
            "--skip-missing-sources",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "all" in result.output and (tmp_path / "cli" / "utterances.jsonl").exists()
