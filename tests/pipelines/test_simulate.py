"""Simulated conversations: deterministic, labels match the audio, speakers stay in their split."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from flywheel.audio import SAMPLE_RATE, load_audio
from flywheel.segments import overlap_ratio
from flywheel.testset import iter_test_set
from pipelines.inventory import Inventory
from pipelines.simulate import AudioCache, SimulationConfig, simulate_conversation
from pipelines.voice_warp import variant_name


@pytest.fixture(scope="module")
def inventory(smoke_data: Path) -> Inventory:
    return Inventory.load(smoke_data / "inventory" / "smoke")


@pytest.fixture(scope="module")
def sim_cfg(params: dict) -> SimulationConfig:
    # the smoke inventory is tiny: no reverb/noise here so energy checks are exact
    cfg = SimulationConfig.from_params(params["simulation"], duration_s=(30, 40))
    cfg.reverb_prob, cfg.snr_db, cfg.bandlimit_prob = 0.0, (60.0, 60.0), 0.0
    return cfg


def test_same_seed_same_conversation(inventory: Inventory, sim_cfg: SimulationConfig) -> None:
    a = simulate_conversation(inventory, "train", 7, sim_cfg)
    b = simulate_conversation(inventory, "train", 7, sim_cfg)
    c = simulate_conversation(inventory, "train", 8, sim_cfg)
    assert np.array_equal(a.waveform, b.waveform) and a.reference == b.reference
    assert not np.array_equal(a.waveform[: len(c.waveform)], c.waveform[: len(a.waveform)])


def test_shape_of_a_conversation(inventory: Inventory, sim_cfg: SimulationConfig) -> None:
    conv = simulate_conversation(inventory, "train", 3, sim_cfg)
    assert 2 <= len(conv.reference.labels()) <= 4
    assert 30 <= conv.duration <= 40 + 10  # the last turn may run past the target
    assert conv.reference.get_timeline().extent().end <= conv.duration + 1e-6
    assert np.abs(conv.waveform).max() <= 1.0


def test_reference_matches_the_audio(inventory: Inventory, sim_cfg: SimulationConfig) -> None:
    """Labelled frames carry speech energy; unlabelled frames are (nearly) silent."""
    conv = simulate_conversation(inventory, "train", 11, sim_cfg)
    hop = int(0.02 * SAMPLE_RATE)
    frames = conv.waveform[: len(conv.waveform) // hop * hop].reshape(-1, hop)
    energy_db = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    centres = (np.arange(len(frames)) + 0.5) * 0.02
    speech = conv.reference.get_timeline().support()
    labelled = np.array([any(s.start <= t < s.end for s in speech) for t in centres])
    assert labelled.mean() > 0.5
    # speech frames are loud, non-speech frames at least 20 dB quieter on median
    assert np.median(energy_db[labelled]) - np.median(energy_db[~labelled]) > 20
    # tight labels: few labelled frames are silent (pauses inside turns are not labelled)
    silent = energy_db < np.median(energy_db[labelled]) - 40
    assert (silent & labelled).sum() / labelled.sum() < 0.1


def test_overlap_statistics(inventory: Inventory, params: dict) -> None:
    cfg = SimulationConfig.from_params(params["simulation"], duration_s=(30, 60))
    audio = AudioCache(inventory)
    ratios, weights = [], []
    for seed in range(12):
        conv = simulate_conversation(inventory, "train", seed, cfg, audio)
        ratios.append(overlap_ratio(conv.reference))
        weights.append(conv.reference.get_timeline().support().duration())
    assert 0.08 <= np.average(ratios, weights=weights) <= 0.22


def test_dev_and_test_sets_use_only_their_speakers(smoke_data: Path, inventory: Inventory) -> None:
    """dev and test draw only their own speakers; confirm and tune draw the dev speakers on seeds of
    their own."""
    manifest = json.loads((smoke_data / "conversations" / "smoke" / "manifest.json").read_text())
    for split, speaker_split in (("dev", "dev"), ("test", "test"), ("confirm", "dev"), ("tune", "dev")):
        for spk in manifest["splits"][split]["speakers"]:
            assert inventory.speakers[spk].split == speaker_split
        for item in iter_test_set(smoke_data / "conversations" / "smoke" / split):
            assert len(load_audio(item.audio_path)) / SAMPLE_RATE == pytest.approx(
                item.uem.extent().end, abs=0.01
            )
    seeds = {split: {f["seed"] for f in info["files"]} for split, info in manifest["splits"].items()}
    assert not seeds["confirm"] & seeds["dev"] and not seeds["tune"] & (seeds["dev"] | seeds["confirm"])


def test_a_rebuild_is_byte_for_byte_the_same(smoke_data: Path, params: dict, tmp_path: Path) -> None:
    """The conversations' folder (audio, labels, manifest) is a pure function of the inventory and
    params, so DVC's hash of it only changes when they do (no timings in the manifest)."""
    from pipelines.build_conversations import build_conversations

    first, again = smoke_data / "conversations" / "smoke", tmp_path / "again"
    build_conversations("smoke", smoke_data / "inventory" / "smoke", again, params=params)

    def files(root: Path) -> list[Path]:
        return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())

    assert files(first) and files(first) == files(again)
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files(first))


def test_formant_warped_voices_are_new_speakers_on_the_same_timeline(
    inventory: Inventory, sim_cfg: SimulationConfig
) -> None:
    """Warping renames every chosen speaker and changes the audio, never the turns or their timing."""
    plain = simulate_conversation(inventory, "train", 21, sim_cfg)
    warped_cfg = dataclasses.replace(sim_cfg, formant_warps=(0.88, 1.14), formant_warp_prob=1.0)
    warped = simulate_conversation(inventory, "train", 21, warped_cfg)
    renamed = {variant_name(s, 0.88) for s in plain.speakers} | {
        variant_name(s, 1.14) for s in plain.speakers
    }
    assert set(warped.speakers) <= renamed and len(warped.speakers) == len(plain.speakers)
    assert warped.reference.get_timeline() == plain.reference.get_timeline()
    assert len(warped.waveform) == len(plain.waveform)
    assert not np.allclose(warped.waveform, plain.waveform)
    # probability 0: the recipe's default, identical to the plain conversation
    off = dataclasses.replace(sim_cfg, formant_warps=(0.88,), formant_warp_prob=0.0)
    assert np.array_equal(simulate_conversation(inventory, "train", 21, off).waveform, plain.waveform)
