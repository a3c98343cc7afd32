"""A generated corpus of hostile uploads for ``POST /v1/diarize`` (imported by name by the tests).

Each case is ``(name, body, query, headers)``; every one must answer 200 or 4xx, never 5xx, and
leave exactly one row in the prediction log. Deterministic (seeded), a few hundred KB in all.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator

import numpy as np
from serving_helpers import encode

Case = tuple[str, bytes, str, dict[str, str]]


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    tone = np.sin(2 * np.pi * (120 + 40 * np.sin(3 * t)) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return (0.3 * tone + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _wav_header(channels: int, rate: int, bits: int, data_size: int, fmt_tag: int = 1) -> bytes:
    block = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", data_size))
    )


def _flipped(data: bytes, rng: np.random.Generator, flips: int) -> bytes:
    out = bytearray(data)
    for pos in rng.integers(0, len(out), flips):
        out[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def corpus(seed: int = 0) -> Iterator[Case]:
    """The hostile cases (about 90)."""
    rng = np.random.default_rng(seed)
    audio = _speechlike(2.0)
    wav, flac = encode(audio), encode(audio, 16000, "FLAC")
    ogg = encode(audio, 16000, "OGG", "VORBIS")
    none: dict[str, str] = {}
    # Not audio at all.
    for n in (0, 1, 3, 44, 1000, 50_000):
        yield f"random-{n}", rng.integers(0, 256, n, dtype=np.uint8).tobytes(), "", none
    yield "text", b"hello, is this audio?\n" * 40, "", none
    yield "json", b'{"audio": "base64..."}', "", {"Content-Type": "application/json"}
    # Cut at every interesting point of each container (headers, mid-data).
    for label, data in (("wav", wav), ("flac", flac), ("ogg", ogg)):
        for cut in (4, 12, 20, 36, 44, 100, len(data) // 3, len(data) // 2, len(data) - 7):
            yield f"{label}-cut-{cut}", data[:cut], "", none
        for i in range(4):
            yield f"{label}-bitflips-{i}", _flipped(data, rng, 1 + 20 * i), "", none
    # WAV headers that lie.
    pcm = (audio * 32767).astype("<i2").tobytes()
    for channels, rate, bits, tag in (
        (0, 16000, 16, 1),
        (1, 0, 16, 1),
        (1, 16000, 0, 1),
        (1, 16000, 7, 1),
        (65535, 16000, 16, 1),
        (1, 4_000_000_000, 16, 1),
        (1, 16000, 16, 0x55),  # MP3 in WAV
        (1, 16000, 16, 0xFFFE),
    ):
        yield (
            f"wav-lies-{channels}-{rate}-{bits}-{tag}",
            _wav_header(channels, rate, bits, len(pcm), tag) + pcm,
            "",
            none,
        )
    yield "wav-huge-declared", _wav_header(1, 16000, 16, 0x7FFFFFF0) + pcm[:1000], "", none
    yield "wav-zero-data", _wav_header(1, 16000, 16, 0), "", none
    yield "riff-not-wave", b"RIFF" + struct.pack("<I", 100) + b"AVI " + b"\0" * 100, "", none
    # Values the decoder accepts but the service must refuse or handle.
    nan = audio.copy()
    nan[::100] = np.nan
    yield "nan", encode(nan, 16000, "WAV", "FLOAT"), "", none
    yield "inf", encode(np.full(16000, np.inf, dtype=np.float32), 16000, "WAV", "FLOAT"), "", none
    yield "silence", encode(np.zeros(32000, dtype=np.float32)), "", none
    yield "dc", encode(np.full(32000, 0.5, dtype=np.float32)), "", none
    yield "clipped", encode(np.sign(audio).astype(np.float32)), "", none
    yield "tiny", encode(audio[:100]), "", none
    yield "rate-1000", encode(audio[:4000], 1000), "", none
    yield "rate-384k", encode(np.tile(audio[:16000], 24), 384000), "", none
    yield "rate-odd", encode(audio, 44101), "", none
    yield "many-channels", encode(np.tile(audio[:16000, None], (1, 16))), "", none
    # Query parameters (FastAPI's validation and ours).
    for query in (
        "?num_speakers=abc",
        "?num_speakers=-1",
        "?num_speakers=0",
        "?num_speakers=21",
        "?num_speakers=1e3",
        "?num_speakers=",
        "?num_speakers=%00",
        "?num_speakers=2&num_speakers=3",
        "?format=xml",
        "?format=",
        "?format=%C3%A9",
        "?arm=nope",
        "?arm=fast-cnn",
        "?" + "x" * 4000,
    ):
        yield f"query-{query[:20]}", wav, query, none
    # Encodings and content types.
    yield "gzip-ok", gzip.compress(wav), "", {"Content-Encoding": "gzip"}
    yield "gzip-bomb", gzip.compress(b"\0" * (4 << 20)), "", {"Content-Encoding": "gzip"}
    yield "gzip-cut", gzip.compress(wav)[:-100], "", {"Content-Encoding": "gzip"}
    yield "gzip-liar", wav, "", {"Content-Encoding": "gzip"}
    yield "deflate-garbage", b"\x78\x9c" + b"\xff" * 100, "", {"Content-Encoding": "deflate"}
    for coding in ("br", "compress", "zstd", "gzip, br", "identity"):
        yield f"encoding-{coding}", wav, "", {"Content-Encoding": coding}
    boundary = "XyZ"
    yield (
        "multipart-no-file",
        f'--{boundary}\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--{boundary}--\r\n'.encode(),
        "",
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    yield (
        "multipart-broken",
        b"--nope\r\n\r\n" + wav[:500],
        "",
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    yield "multipart-no-boundary", wav, "", {"Content-Type": "multipart/form-data"}
    two_files = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"; filename="a.wav"\r\n\r\n'.encode()
        + wav
        + b"\r\n"
        for i in range(2)
    )
    yield (
        "multipart-two-files",
        two_files + f"--{boundary}--\r\n".encode(),
        "",
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    # Headers.
    yield "client-id-long", wav, "", {"X-Client-Id": "c" * 5000}
    yield "request-id-junk", wav, "", {"X-Request-Id": "'; DROP TABLE predictions; --"}
    yield "bad-content-length", wav, "", {"Content-Length": "abc"}
    yield "api-key-wrong", wav, "", {"X-API-Key": "wrong"}
    yield "bearer-empty", wav, "", {"Authorization": "Bearer "}
