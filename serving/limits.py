"""Bounded input handling: read an upload with a byte cap and a deadline, decode it with clear errors.

Every problem with the input becomes an :class:`InputError` carrying a 4xx status and a message fit
for the client, so bad input never turns into a 500 or a hang:

* too many bytes (``Content-Length`` or counted while streaming) -> 413, reading stops at the cap;
* an upload that does not finish in time -> 408;
* a client that goes away before the upload is complete -> 499 (a client-side status: nginx's
  "client closed request"; never counted as a server error);
* ``Content-Encoding: gzip`` / ``deflate`` bodies are decoded while they stream in, and the decoded
  size counts against the cap (413 past it, 400 for a broken stream); any other encoding -> 415;
* not audio / unsupported container / truncated WAV or OGG -> 415; empty -> 400; too short, silent,
  NaN samples, implausible sample rate -> 422; too long -> 413.
"""

from __future__ import annotations

import asyncio
import io
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from math import gcd

import numpy as np
import soundfile as sf
from starlette.requests import ClientDisconnect, Request

from flywheel.audio import (
    SAMPLE_RATE,
    AudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UnsupportedFormatError,
    load_audio,
    resample,
    to_mono,
    validate_samples,
)
from serving.integrity import TruncatedAudioError, check_complete

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
MAX_RESAMPLING_FACTOR = 1_000  # beyond this (e.g. 44101 Hz) polyphase resampling gets very slow
SNAP_HZ = 50  # odd rates are read as the nearest multiple of this (timing error < 0.1 %)
MULTIPART_OVERHEAD = 64 * 1024
CLIENT_CLOSED = 499  # the client went away before the answer (not a server error)
# Content-Encoding -> zlib wbits: gzip framing, or zlib framing (HTTP's "deflate"; raw deflate is tried too)
ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}

_STATUS: list[tuple[type[AudioError], int]] = [
    (EmptyAudioError, 400),
    (NotAudioError, 415),
    (UnsupportedFormatError, 415),
    (TooLongError, 413),
    (TooShortError, 422),
    (InvalidSamplesError, 422),
    (SilentAudioError, 422),
]


class InputError(Exception):
    """A client error: ``status`` (4xx) and a message to show."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may send."""

    max_bytes: int
    max_duration_s: float
    min_duration_s: float = 0.5
    timeout_s: float = 60.0


def status_of(err: AudioError) -> int:
    """HTTP status for an audio error (422 for any subclass not listed)."""
    for cls, status in _STATUS:
        if isinstance(err, cls):
            return status
    return 422


async def _capped(chunks: AsyncIterator[bytes], cap: int) -> bytes:
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > cap:
            raise InputError(413, f"upload larger than the limit of {cap} bytes")
    return bytes(buf)


def content_coding(header: str | None) -> str | None:
    """The one supported ``Content-Encoding`` of a request (None: not encoded); 415 otherwise."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ENCODINGS:
        return codings[0]
    supported = ", ".join(sorted(ENCODINGS))
    raise InputError(
        415,
        f"Content-Encoding {header!r} is not supported: send the body unencoded or with one of {supported}",
    )


async def _decoded(chunks: AsyncIterator[bytes], coding: str, cap: int) -> bytes:
    """Decompress a gzip/deflate body as it arrives, refusing more than ``cap`` decoded bytes (a
    small compressed body may expand enormously: reading stops at the cap)."""
    wbits = ENCODINGS[coding]
    inflater = zlib.decompressobj(wbits)
    out, received, first = bytearray(), 0, True
    async for chunk in chunks:
        received += len(chunk)
        if received > cap:
            raise InputError(413, f"upload larger than the limit of {cap} bytes")
        try:
            out += inflater.decompress(chunk, cap + 1 - len(out))
        except zlib.error as err:
            if not (first and coding == "deflate"):
                raise InputError(400, f"body is not valid {coding} data: {err}") from None
            inflater = zlib.decompressobj(-15)  # raw deflate, as some clients send it
            try:
                out += inflater.decompress(chunk, cap + 1 - len(out))
            except zlib.error as raw_err:
                raise InputError(400, f"body is not valid {coding} data: {raw_err}") from None
        first = False
        if len(out) > cap:
            raise InputError(413, f"decoded upload larger than the limit of {cap} bytes")
    if not inflater.eof:
        raise InputError(400, f"{coding} body is incomplete (the compressed stream was cut short)")
    return bytes(out)


async def read_body(request: Request, limits: Limits) -> bytes:
    """The whole request body (decoded if it has a supported ``Content-Encoding``), refusing more
    than the cap (plus multipart framing), a slow upload, or a client that disconnects."""
    multipart = request.headers.get("content-type", "").startswith("multipart/")
    cap = limits.max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    coding = content_coding(request.headers.get("content-encoding"))
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InputError(400, "invalid Content-Length header") from None
        if length > cap:
            raise InputError(413, f"upload of {length} bytes is larger than the limit of {cap} bytes")
    try:
        async with asyncio.timeout(limits.timeout_s):
            if coding is None:
                return await _capped(request.stream(), cap)
            return await _decoded(request.stream(), coding, cap)
    except TimeoutError:
        raise InputError(408, f"upload not received within {limits.timeout_s:g} s") from None
    except ClientDisconnect:
        raise InputError(CLIENT_CLOSED, "client disconnected before the upload was complete") from None


async def audio_bytes(request: Request, body: bytes) -> bytes:
    """The audio in a request: the first file of a multipart form, or the raw body."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def replay() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=20)
    except Exception as err:  # malformed multipart framing
        raise InputError(400, f"malformed multipart upload: {err}") from None
    for _, value in form.multi_items():
        if not isinstance(value, str):
            return await value.read()
    raise InputError(400, "multipart upload has no file part (send the audio as a file field)")


def _odd_rate(sr: int) -> bool:
    g = gcd(sr, SAMPLE_RATE)
    return max(SAMPLE_RATE // g, sr // g) > MAX_RESAMPLING_FACTOR


def _decode_snapped(data: bytes, sr: int, limits: Limits) -> np.ndarray:
    """Decode audio at an odd rate, resampling as if it were the nearest multiple of ``SNAP_HZ``."""
    snapped = max(SNAP_HZ, round(sr / SNAP_HZ) * SNAP_HZ)
    with sf.SoundFile(io.BytesIO(data)) as f:
        if f.frames > 0 and f.frames / sr > limits.max_duration_s:
            length = f.frames / sr
            raise TooLongError(f"audio is {length:.1f} s long; the maximum is {limits.max_duration_s:g} s")
        try:
            raw = f.read(frames=int(limits.max_duration_s * sr) + 1, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise NotAudioError(f"audio data could not be decoded: {err}") from None
    samples = to_mono(raw)
    validate_samples(samples, sr, min_duration=0.0, max_duration=limits.max_duration_s)
    samples = resample(samples, snapped, SAMPLE_RATE)
    validate_samples(
        samples,
        SAMPLE_RATE,
        min_duration=limits.min_duration_s,
        max_duration=limits.max_duration_s,
        reject_silence=True,
    )
    return samples


def decode(data: bytes, limits: Limits) -> np.ndarray:
    """16 kHz mono float32 from uploaded bytes (WAV, FLAC, OGG; any rate and channel count).

    Raises:
        InputError: with the 4xx status matching the problem.
    """
    try:
        if not data:
            raise EmptyAudioError("empty upload: 0 bytes received")
        try:
            check_complete(data)
        except TruncatedAudioError as err:
            raise InputError(415, str(err)) from None
        try:
            info = sf.info(io.BytesIO(data))
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            reason = getattr(err, "error_string", None) or type(err).__name__
            raise NotAudioError(f"not a decodable audio file (expected WAV, FLAC or OGG): {reason}") from None
        sr = int(info.samplerate)
        if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
            raise InputError(
                422, f"sample rate {sr} Hz is outside the accepted {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
            )
        if _odd_rate(sr) and info.format in ("WAV", "FLAC", "OGG"):
            return _decode_snapped(data, sr, limits)
        return load_audio(
            data,
            min_duration=limits.min_duration_s,
            max_duration=limits.max_duration_s,
            reject_silence=True,
        )
    except AudioError as err:
        raise InputError(status_of(err), str(err)) from None
