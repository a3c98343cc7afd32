"""Silero VAD run with onnxruntime: frame handling, hysteresis, real speech vs silence and noise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from flywheel.config import get_settings
from flywheel.vad import (
    CONTEXT_SAMPLES,
    FRAME_SAMPLES,
    SileroVAD,
    default_model_path,
    package_file,
    regions_from_probabilities,
)

LIBRI = get_settings().shared_data_dir / "librispeech-251"


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    path = LIBRI / "103-1240-0000.flac"
    if not path.exists():
        pytest.skip(f"shared data missing: {path}")
    from flywheel.audio import load_audio

    return load_audio(path)


def test_model_file_is_found_without_importing_the_package() -> None:
    assert default_model_path().name == "silero_vad.onnx"
    with pytest.raises(FileNotFoundError):
        package_file("silero_vad", "data", "no-such-file.onnx")


def test_one_probability_per_frame(vad: SileroVAD) -> None:
    for n in (0, 100, FRAME_SAMPLES, FRAME_SAMPLES + 1, 16_000):
        probs = vad.speech_probabilities(np.zeros(n, dtype=np.float32))
        assert probs.shape == (-(-n // FRAME_SAMPLES),)
        assert np.all((probs >= 0) & (probs <= 1))


def test_streaming_matches_the_sequence_model(vad: SileroVAD, speech: np.ndarray) -> None:
    """The shipped sequence export computes the same frames in one call: same context handling."""
    import onnxruntime as ort

    wav = speech[: 3 * 16_000 + 123]
    n = -(-wav.size // FRAME_SAMPLES)
    frames = np.zeros((n, FRAME_SAMPLES), dtype=np.float32)
    frames.reshape(-1)[: wav.size] = wav
    context = np.zeros((n, CONTEXT_SAMPLES), dtype=np.float32)
    context[1:] = frames[:-1, -CONTEXT_SAMPLES:]
    session = ort.InferenceSession(
        str(package_file("silero_vad", "data", "silero_vad_16k_sequence.onnx")),
        providers=["CPUExecutionProvider"],
    )
    state = np.zeros((1, 1, 128), dtype=np.float32)
    expected = session.run(
        ["speech_probs"], {"input": np.concatenate([context, frames], axis=1), "h": state, "c": state}
    )[0]
    np.testing.assert_allclose(vad.speech_probabilities(wav), expected.reshape(-1), atol=1e-5)


def test_finds_speech_in_a_real_recording(vad: SileroVAD, speech: np.ndarray) -> None:
    regions = vad.speech_regions(speech)
    duration = speech.size / 16_000
    assert regions
    assert all(0 <= s < e <= duration for s, e in regions)
    assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(regions))
    assert sum(e - s for s, e in regions) > 0.5 * duration


def test_no_speech_in_silence_or_noise(vad: SileroVAD) -> None:
    rng = np.random.default_rng(0)
    assert vad.speech_regions(np.zeros(5 * 16_000, dtype=np.float32)) == []
    for level in (0.003, 0.05):
        noise = (rng.normal(size=5 * 16_000) * level).astype(np.float32)
        assert vad.speech_regions(noise, threshold=0.25) == []


def _frames(seconds: float) -> int:
    return round(seconds * 16_000 / FRAME_SAMPLES)


def test_hysteresis_keeps_speech_between_the_two_thresholds() -> None:
    probs = np.array([0.0] * 10 + [0.9] * 20 + [0.4] * 20 + [0.9] * 20 + [0.0] * 30, dtype=np.float32)
    regions = regions_from_probabilities(probs, probs.size * FRAME_SAMPLES, threshold=0.5, pad_s=0.0)
    assert len(regions) == 1  # 0.4 is above the offset threshold 0.35: no cut
    start, end = regions[0]
    assert start == pytest.approx(10 * FRAME_SAMPLES / 16_000)
    assert end == pytest.approx(70 * FRAME_SAMPLES / 16_000)
    split = regions_from_probabilities(
        probs, probs.size * FRAME_SAMPLES, threshold=0.5, neg_threshold=0.45, pad_s=0.0
    )
    assert len(split) == 2


def test_short_bursts_and_short_gaps() -> None:
    n = 200
    probs = np.zeros(n, dtype=np.float32)
    probs[10:13] = 0.9  # ~0.1 s burst: below min_speech_s
    probs[50:100] = 0.9
    probs[101:150] = 0.9  # one-frame dip: shorter than min_silence_s
    regions = regions_from_probabilities(probs, n * FRAME_SAMPLES, min_speech_s=0.25, min_silence_s=0.1)
    assert len(regions) == 1
    start, end = regions[0]
    assert start == pytest.approx(50 * 0.032 - 0.03, abs=1e-3)
    assert end == pytest.approx(150 * 0.032 + 0.03, abs=1e-3)


def test_speech_until_the_end_is_closed_at_the_audio_length() -> None:
    probs = np.array([0.0] * 5 + [0.9] * 20, dtype=np.float32)
    n_samples = 25 * FRAME_SAMPLES - 100
    (region,) = regions_from_probabilities(probs, n_samples, pad_s=0.03)
    assert region[1] == pytest.approx(n_samples / 16_000)
