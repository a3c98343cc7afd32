"""The baseline system (Silero VAD + resemblyzer + AHC), its registry entry and threshold tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pyannote.core import Annotation

from flywheel.audio import load_audio, write_audio
from flywheel.config import get_settings
from flywheel.segments import annotation_from_turns, write_rttm, write_uem
from flywheel.systems import DiarizationSystem, available_systems, get_system
from flywheel.systems.baseline import BaselineSystem, label_regions, sliding_windows

SR = 16_000
LIBRI = get_settings().shared_data_dir / "librispeech-251"


def energy_turns(samples: np.ndarray, offset: float, speaker: str) -> list[tuple[float, float, str]]:
    """Reference turns of one clean utterance: 10 ms frames within 20 dB of its loudest one.

    Pauses of 0.3 s or more inside the utterance are not speech (LibriSpeech utterances have some).
    """
    frames = samples[: samples.size // 160 * 160].reshape(-1, 160)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(level > level.max() - 20)
    turns: list[tuple[float, float, str]] = []
    for i in active:
        start, end = offset + i * 0.01, offset + (i + 1) * 0.01
        if turns and start - turns[-1][1] < 0.3:
            turns[-1] = (turns[-1][0], end, speaker)
        else:
            turns.append((start, end, speaker))
    return [t for t in turns if t[1] - t[0] >= 0.1]


@pytest.fixture(scope="module")
def two_speakers() -> tuple[np.ndarray, Annotation]:
    """A 19 s file: female speaker, pause, male speaker, pause, the female speaker again."""
    female, male = LIBRI / "103-1240-0000.flac", LIBRI / "1034-121119-0000.flac"
    if not (female.exists() and male.exists()):
        pytest.skip(f"shared data missing: {LIBRI}")
    a, b = load_audio(female), load_audio(male)
    pause = np.zeros(SR, dtype=np.float32)
    parts = [(a[: 6 * SR], "A"), (pause, None), (b[: 6 * SR], "B"), (pause, None), (a[6 * SR : 11 * SR], "A")]
    turns, t = [], 0.0
    for samples, speaker in parts:
        if speaker:
            turns += energy_turns(samples, t, speaker)
        t += samples.size / SR
    return np.concatenate([p for p, _ in parts]), annotation_from_turns(turns, uri="two")


@pytest.fixture(scope="module")
def system() -> BaselineSystem:
    return BaselineSystem(threshold=0.3)


def der(reference: Annotation, hypothesis: Annotation, collar: float = 0.0) -> float:
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    extent = reference.get_timeline().extent() | hypothesis.get_timeline().extent()
    uem = Timeline([Segment(0, extent.end)])
    return float(DiarizationErrorRate(collar=collar, skip_overlap=False)(reference, hypothesis, uem=uem))


def test_registry_lists_and_builds_the_baseline(system: BaselineSystem) -> None:
    assert "baseline" in available_systems()
    assert isinstance(system, DiarizationSystem)
    assert system.name == "baseline"
    with pytest.raises(KeyError, match="baseline"):
        get_system("no-such-system")


def test_options_override_params_and_typos_fail() -> None:
    with pytest.raises(TypeError, match="unknown baseline option"):
        BaselineSystem(treshold=0.2)


Clip = tuple[np.ndarray, Annotation]


def test_two_librispeech_speakers(system: BaselineSystem, two_speakers: Clip) -> None:
    waveform, reference = two_speakers
    hypothesis = system.diarize(waveform, uri="two")
    assert hypothesis.uri == "two"
    assert sorted(hypothesis.labels()) == ["SPEAKER_00", "SPEAKER_01"]
    assert der(reference, hypothesis) < 0.3
    assert hypothesis.get_overlap().duration() == 0  # the baseline never outputs overlap


def test_prepare_then_cluster_equals_diarize(
    system: BaselineSystem, two_speakers: tuple[np.ndarray, Annotation]
) -> None:
    waveform, _ = two_speakers
    prepared = system.prepare(waveform)
    assert prepared.embeddings.shape == (len(prepared.windows), 256)
    np.testing.assert_allclose(np.linalg.norm(prepared.embeddings, axis=1), 1.0, atol=1e-5)
    direct = system.diarize(waveform, uri="x")
    assert system.cluster(prepared, uri="x") == direct
    assert len(system.cluster(prepared, threshold=1.5, uri="x").labels()) == 1


def test_silence_gives_an_empty_annotation(system: BaselineSystem) -> None:
    silence = system.diarize(np.zeros(5 * SR, dtype=np.float32), uri="quiet")
    assert isinstance(silence, Annotation)
    assert len(silence) == 0
    noise = (np.random.default_rng(0).normal(size=5 * SR) * 0.01).astype(np.float32)
    assert len(system.diarize(noise)) == 0


def test_a_single_short_speech_region(system: BaselineSystem, two_speakers: Clip) -> None:
    waveform, _ = two_speakers
    short = np.zeros(4 * SR, dtype=np.float32)
    speech = waveform[int(1.6 * SR) : int(2.4 * SR)]  # inside the first speaker's first phrase
    short[2 * SR : 2 * SR + speech.size] = speech
    hypothesis = system.diarize(short)
    assert hypothesis.labels() == ["SPEAKER_00"]
    assert 1.5 < hypothesis.get_timeline().extent().start < 2.5
    # shorter than one window: still diarized
    assert system.diarize(speech[: int(0.7 * SR)]).labels() == ["SPEAKER_00"]


def test_sliding_windows_cover_regions() -> None:
    windows, owner = sliding_windows([(0.2, 0.8), (2.0, 5.3)], window_s=1.5, step_s=0.75, duration=10.0)
    assert windows[0].tolist() == pytest.approx([0.0, 1.5])  # centred, shifted inside the audio
    assert owner.tolist() == [0, 1, 1, 1, 1]
    assert windows[1, 0] == pytest.approx(2.0) and windows[-1, 1] == pytest.approx(5.3)
    assert np.allclose(windows[:, 1] - windows[:, 0], 1.5)
    tiny, _ = sliding_windows([(0.1, 0.9)], window_s=1.5, step_s=0.75, duration=1.0)
    assert tiny.tolist() == [[0.0, 1.0]]
    empty, empty_owner = sliding_windows([], 1.5, 0.75, 3.0)
    assert empty.shape == (0, 2) and empty_owner.shape == (0,)


def test_frames_take_the_nearest_window_label() -> None:
    windows = np.array([[0.0, 1.5], [0.75, 2.25], [1.5, 3.0], [5.0, 6.5]])
    turns = label_regions([(0.0, 3.0), (5.2, 6.0)], windows, np.array([0, 0, 0, 1]), np.array([0, 0, 1, 0]))
    assert turns == [(0.0, pytest.approx(1.88), 0), (pytest.approx(1.88), 3.0, 1), (5.2, 6.0, 0)]


def test_tune_threshold_and_write_params(tmp_path: Path, two_speakers: tuple[np.ndarray, Annotation]) -> None:
    from experiments.tune import parse_thresholds, tune_threshold, write_threshold

    waveform, reference = two_speakers
    dev = tmp_path / "dev"
    write_audio(dev / "two.wav", waveform)
    write_rttm(dev / "two.rttm", reference)
    write_uem(dev / "two.uem", "two", [reference.get_timeline().extent().__class__(0, waveform.size / SR)])
    best, table = tune_threshold("baseline", dev, [0.01, 0.3, 1.9])
    assert [row["threshold"] for row in table] == [0.01, 0.3, 1.9]
    assert best == 0.3
    assert table[1]["der"] < table[2]["der"]
    twice_best, twice = tune_threshold("baseline", [dev, dev], [0.01, 0.3, 1.9])  # several sets, one DER
    assert twice_best == best and [r["der"] for r in twice] == pytest.approx([r["der"] for r in table])

    assert parse_thresholds("0.2:0.3:0.05") == [0.2, 0.25, 0.3]
    assert parse_thresholds("0.5, 0.1") == [0.1, 0.5]
    params = tmp_path / "params.yaml"
    params.write_text(
        "seed: 1\nsystems:\n  other:\n    threshold: 0.9\n"
        "  baseline:          # comment kept\n    window_s: 1.5\n    threshold: 0.3   # tuned\n"
        "threshold: 7\n"
    )
    write_threshold(params, "baseline", 0.42)
    text = params.read_text()
    assert "    threshold: 0.42   # tuned\n" in text
    assert "threshold: 0.9" in text and "threshold: 7" in text and "# comment kept" in text
    with pytest.raises(KeyError):
        write_threshold(params, "missing", 0.1)

    from experiments.tune import main

    # a plain Python call, as `flywheel tune` does
    main(dev_set=dev, thresholds="0.3,1.9", write_params=True, params_file=params)
    assert "    threshold: 0.3   # tuned\n" in params.read_text()
