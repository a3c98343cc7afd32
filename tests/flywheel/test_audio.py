"""Audio loading: every supported input decodes to 16 kHz mono; every bad input has its own error."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from flywheel.audio import (
    SAMPLE_RATE,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UnsupportedFormatError,
    load_audio,
    to_mono,
)


def encode(samples: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize(
    "fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("WAV", "FLOAT")]
)
@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
def test_formats_and_rates_decode_to_16k_mono(fmt: str, subtype: str, sr: int) -> None:
    out = load_audio(encode(tone(1.0, sr), sr, fmt, subtype))
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - SAMPLE_RATE) <= 2


def test_stereo_is_averaged_to_mono() -> None:
    stereo = np.zeros((16000, 2), dtype=np.float32)
    stereo[:, 0] = 0.5
    out = load_audio(encode(stereo, 16000, subtype="FLOAT"))
    assert out.shape == (16000,)
    assert np.allclose(out, 0.25, atol=1e-4)


def test_one_channel_becomes_mono_without_a_copy() -> None:
    one = np.arange(8, dtype=np.float32)[:, None]
    out = to_mono(one)
    assert out.shape == (8,) and out.flags.c_contiguous and np.shares_memory(out, one)
    assert out.tolist() == list(range(8))


def test_path_input(tmp_path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, tone(1.0, 16000), 16000)
    assert len(load_audio(path)) == 16000


def test_not_audio() -> None:
    with pytest.raises(NotAudioError):
        load_audio(b"this is definitely not audio, just some text bytes" * 10)


def test_empty_bytes() -> None:
    with pytest.raises(EmptyAudioError):
        load_audio(b"")


def test_header_without_samples() -> None:
    with pytest.raises(EmptyAudioError):
        load_audio(encode(np.zeros(0, dtype=np.float32), 16000))


def test_too_short() -> None:
    with pytest.raises(TooShortError, match="minimum"):
        load_audio(encode(tone(0.1, 16000), 16000))


def test_too_long_is_refused_from_the_header() -> None:
    with pytest.raises(TooLongError, match="maximum"):
        load_audio(encode(tone(3.0, 16000), 16000), max_duration=2.0)


def test_nan_samples() -> None:
    x = tone(1.0, 16000)
    x[100] = np.nan
    with pytest.raises(InvalidSamplesError):
        load_audio(encode(x, 16000, subtype="FLOAT"))


def test_inf_samples() -> None:
    x = tone(1.0, 16000)
    x[5] = np.inf
    with pytest.raises(InvalidSamplesError):
        load_audio(encode(x, 16000, subtype="FLOAT"))


def test_unsupported_container() -> None:
    with pytest.raises(UnsupportedFormatError):
        load_audio(encode(tone(1.0, 16000), 16000, fmt="AIFF"))


def test_silence_rejected_only_when_asked() -> None:
    data = encode(np.zeros(16000, dtype=np.float32), 16000)
    assert len(load_audio(data)) == 16000
    with pytest.raises(SilentAudioError):
        load_audio(data, reject_silence=True)


def test_truncated_file_does_not_crash() -> None:
    data = encode(tone(2.0, 16000), 16000, fmt="FLAC")
    try:
        out = load_audio(data[: len(data) // 3])
    except NotAudioError:
        return
    assert len(out) < 2 * 16000
