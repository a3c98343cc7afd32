"""The real-voice evaluation sets: real voices only, speakers held out and disjoint between sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flywheel.segments import read_rttm, read_uem
from pipelines.build_real_sets import REAL_SETS, build_real_sets, is_real_voice, real_pool
from pipelines.inventory import Inventory
from pipelines.real_acoustics import RealRecipe, render, vorbis_round_trip


def test_real_voice_ids() -> None:
    assert is_real_voice("libri:1235") and is_real_voice("fillets-cs:small") and is_real_voice("asterisk:x")
    assert not is_real_voice("espeak:Alex") and not is_real_voice("tts:kal")
    assert not is_real_voice("libri:1235@+500c"), "pitch-shifted copies are not real voices"


def test_pools_are_real_held_out_and_disjoint(smoke_data: Path) -> None:
    inventory = Inventory.load(smoke_data / "inventory" / "smoke")
    split_of = {s.speaker: s.split for s in inventory.speakers.values()}
    pools = {name: set(real_pool(inventory, name)) for name in REAL_SETS}
    for name, speakers in pools.items():
        assert all(is_real_voice(s) for s in speakers)
        assert all(split_of[s] == REAL_SETS[name][0] for s in speakers), "never a training speaker"
    assert not pools["dev-real"] & pools["confirm-real"]
    assert not (pools["dev-real"] | pools["confirm-real"]) & pools["test-real"]
    assert pools["dev-real"] | pools["confirm-real"] == {
        s for s in inventory.by_speaker("dev") if is_real_voice(s)
    }


def test_render_is_deterministic_and_bounded() -> None:
    tracks = {"a": np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.05}
    tracks["b"] = np.roll(tracks["a"], 8000)
    one, info = render(np.random.default_rng(7), tracks, RealRecipe(vorbis_prob=1.0))
    two, _ = render(np.random.default_rng(7), tracks, RealRecipe(vorbis_prob=1.0))
    assert np.array_equal(one, two) and len(one) == 32000
    assert np.abs(one).max() <= 1.0 and info["vorbis"] is True
    assert 10.0 <= info["snr_db"] <= 30.0


def test_vorbis_round_trip_keeps_length() -> None:
    x = (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    y = vorbis_round_trip(x)
    assert y.shape == x.shape and np.corrcoef(x[2000:-2000], y[2000:-2000])[0, 1] > 0.9


def test_build_refuses_a_set_without_enough_speakers(smoke_data: Path, params: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="real speakers"):  # smoke holds one real dev voice
        build_real_sets(smoke_data / "inventory" / "smoke", tmp_path, params)


@pytest.mark.slow
def test_build_writes_exact_references(
    smoke_data: Path, params: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # smoke has one or two real voices per held-out split: build from its training voices instead
    sets = {"dev-real": ("train", 0), "confirm-real": ("train", 1), "test-real": ("train", None)}
    monkeypatch.setattr("pipelines.build_real_sets.REAL_SETS", sets)
    turns = {**params["real_sets"]["turns"], "speakers": [2, 2]}
    conf = {**params["real_sets"], "count": dict.fromkeys(sets, 1), "duration_s": [20, 25], "turns": turns}
    manifest = build_real_sets(smoke_data / "inventory" / "smoke", tmp_path, {**params, "real_sets": conf})
    assert set(manifest["sets"]) == set(REAL_SETS)
    # a rebuild is byte for byte the same (no timings in the manifest), so DVC's hash is stable
    again = tmp_path.parent / f"{tmp_path.name}-again"
    build_real_sets(smoke_data / "inventory" / "smoke", again, {**params, "real_sets": conf})
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written and written == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((tmp_path / f).read_bytes() == (again / f).read_bytes() for f in written)
    for name in REAL_SETS:
        (uri,) = [f["uri"] for f in manifest["sets"][name]["files"]]
        reference = read_rttm(tmp_path / name / f"{uri}.rttm")[uri]
        assert set(reference.labels()) <= set(manifest["sets"][name]["speakers"])
        assert reference.get_timeline().duration() > 5.0
        (segment,) = list(read_uem(tmp_path / name / f"{uri}.uem")[uri])
        assert segment.end == pytest.approx(manifest["sets"][name]["files"][0]["duration"], abs=0.01)
