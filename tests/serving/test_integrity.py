"""Truncated WAV and OGG uploads are recognised from their own framing (libsndfile decodes them)."""

from __future__ import annotations

import numpy as np
import pytest
from serving_helpers import encode

from serving.integrity import TruncatedAudioError, check_complete

NOISE = (np.random.default_rng(0).standard_normal(16000 * 6) * 0.1).astype(np.float32)
FORMATS = [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("RF64", "PCM_16"), ("OGG", "VORBIS"), ("OGG", "OPUS")]


@pytest.mark.parametrize(("fmt", "subtype"), FORMATS)
def test_complete_files_pass_and_cut_files_are_refused(fmt: str, subtype: str) -> None:
    data = encode(NOISE, 16000, fmt, subtype)
    check_complete(data)  # whole file: accepted
    for keep in (0.5, 0.99):
        with pytest.raises(TruncatedAudioError, match="truncated"):
            check_complete(data[: int(len(data) * keep)])


def test_wav_message_gives_declared_and_present_durations() -> None:
    data = encode(NOISE, 16000)
    with pytest.raises(
        TruncatedAudioError, match=r"declares 6\.00 s of audio \(192000 bytes\), only 3\.00 s \(96000 bytes\)"
    ):
        check_complete(data[: 44 + 16000 * 2 * 3])


def test_wav_of_unknown_length_is_not_refused() -> None:
    data = bytearray(encode(NOISE, 16000))
    data[40:44] = b"\xff\xff\xff\xff"  # a streaming writer's "size unknown"
    check_complete(bytes(data[:30000]))


def test_ogg_cut_at_a_page_boundary_has_no_end_of_stream_page() -> None:
    data = encode(NOISE, 16000, "OGG", "VORBIS")
    last_page = data.rfind(b"OggS")
    with pytest.raises(TruncatedAudioError, match="end-of-stream"):
        check_complete(data[:last_page])


def test_other_bytes_are_left_to_the_decoder() -> None:
    for data in (b"", b"not audio", b"RIFF\0\0\0\0WAVE", encode(NOISE, 16000, "FLAC")[:5000]):
        check_complete(data)  # no WAV/OGG framing to check: decode() answers for these
    with pytest.raises(TruncatedAudioError, match="middle of a page"):
        check_complete(b"OggS\0")
