"""The HTTP API in process (ASGI, no Ray): formats, bad input -> 4xx, auth, admin override, logging."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from serving_helpers import ADMIN_KEY, build_test_service, call, encode

MAX_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def service(smoke_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    svc = build_test_service(tmp_path_factory.mktemp("api-runtime"), smoke_onnx, MAX_BYTES)
    yield svc
    svc.close()


def test_json_answer(service, clip10: bytes) -> None:
    r = call(service, "POST", "/v1/diarize", content=clip10, headers={"X-Client-Id": "c1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"request_id", "arm", "model", "model_version", "latency_ms", "segments"} <= set(body)
    assert body["arm"] == "fast-cnn" and body["duration_s"] == 10.0
    for seg in body["segments"]:
        assert 0 <= seg["start"] < seg["end"] <= 10.0 and seg["speaker"].startswith("SPEAKER_")
    assert r.headers["x-request-id"] == body["request_id"]


def test_rttm_multipart_and_other_containers(service, speech: np.ndarray) -> None:
    stereo = np.stack([speech[:80000], speech[:80000] * 0.5], axis=1)
    flac = encode(stereo, 16000, "FLAC")
    r = call(service, "POST", "/v1/diarize?format=rttm", files={"file": ("a.flac", flac, "audio/flac")})
    assert r.status_code == 200, r.text
    assert r.text == "" or r.text.startswith("SPEAKER ")
    y = np.interp(np.arange(0, 80000, 16000 / 44100), np.arange(80000), speech[:80000])
    for data in (encode(y, 44100, "OGG", "VORBIS"), encode(y, 44101), encode(speech[:80000], 8000)):
        r = call(service, "POST", "/v1/diarize", content=data)
        assert r.status_code == 200, r.text


def _nan_wav() -> bytes:
    x = np.zeros(16000, dtype=np.float32)
    x[100] = np.nan
    x[200] = 0.5
    return encode(x, 16000, "WAV", "FLOAT")


def _noise(seconds: float) -> np.ndarray:
    return (np.random.default_rng(1).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)


BAD_INPUTS = {
    "not audio": (b"this is not audio at all" * 100, 415),
    "empty": (b"", 400),
    "silent": (encode(np.zeros(32000, dtype=np.float32)), 422),
    "too short": (encode(np.full(1600, 0.3, dtype=np.float32)), 422),
    "NaN samples": (_nan_wav(), 422),
    "too long": (encode(np.full(31 * 8000, 0.1, dtype=np.float32), 8000), 413),
    "too many bytes": (b"RIFF" + b"\0" * (MAX_BYTES + 10), 413),
    "absurd sample rate": (encode(np.full(2000, 0.1, dtype=np.float32), 500), 422),
    "AIFF container": (encode(np.full(16000, 0.1, dtype=np.float32), 16000, "AIFF"), 415),
    "truncated WAV header": (encode(np.full(16000, 0.1, dtype=np.float32))[:30], 415),
    "truncated FLAC": (encode(_noise(4.0), 16000, "FLAC")[:20000], 415),
}
TRUNCATED = {  # decodable, but the file's framing says part of it is missing
    "WAV cut mid-data": encode(_noise(4.0))[: 44 + 2 * 16000 * 2],
    "OGG cut mid-page": encode(_noise(4.0), 16000, "OGG", "VORBIS")[:-3000],
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_a_clear_4xx(service, name: str) -> None:
    data, status = BAD_INPUTS[name]
    r = call(service, "POST", "/v1/diarize", content=data)
    assert r.status_code == status, r.text
    assert r.json()["error"] and "request_id" in r.json()


@pytest.mark.parametrize("name", list(TRUNCATED))
def test_truncated_audio_is_refused_naming_the_truncation(service, name: str) -> None:
    r = call(service, "POST", "/v1/diarize", content=TRUNCATED[name])
    assert r.status_code == 415, r.text
    assert "truncated" in r.json()["error"]


def test_gzip_body_is_decoded_and_its_decoded_size_counts(service, clip10: bytes) -> None:
    gz = {"Content-Encoding": "gzip"}
    r = call(service, "POST", "/v1/diarize", content=gzip.compress(clip10), headers=gz)
    assert r.status_code == 200 and r.json()["duration_s"] == 10.0, r.text
    deflated = {"Content-Encoding": "deflate"}
    assert (
        call(service, "POST", "/v1/diarize", content=zlib.compress(clip10), headers=deflated).status_code
        == 200
    )
    bomb = gzip.compress(b"\0" * (8 * MAX_BYTES))  # 8 KB that expand to 8 MB
    assert len(bomb) < MAX_BYTES // 16
    r = call(service, "POST", "/v1/diarize", content=bomb, headers=gz)
    assert r.status_code == 413 and "decoded" in r.json()["error"], r.text
    r = call(service, "POST", "/v1/diarize", content=gzip.compress(clip10)[:-500], headers=gz)
    assert r.status_code == 400 and "incomplete" in r.json()["error"], r.text
    r = call(service, "POST", "/v1/diarize", content=clip10, headers=gz)  # says gzip, is not
    assert r.status_code == 400 and "gzip" in r.json()["error"], r.text
    for coding in ("br", "zstd", "gzip, gzip"):
        r = call(service, "POST", "/v1/diarize", content=clip10, headers={"Content-Encoding": coding})
        assert r.status_code == 415 and "Content-Encoding" in r.json()["error"], r.text


def test_endless_chunked_upload_is_cut_at_the_cap(service) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 50 * MAX_BYTES:  # bounded for the test; the server stops far earlier
            sent += 65536
            yield b"\0" * 65536

    r = call(service, "POST", "/v1/diarize", content=endless())
    assert r.status_code == 413
    assert sent < 3 * MAX_BYTES


def test_multipart_without_a_file_and_bad_format(service, clip10: bytes) -> None:
    no_file = {"note": (None, "a text field, no file")}
    assert call(service, "POST", "/v1/diarize", files=no_file).status_code == 400
    assert call(service, "POST", "/v1/diarize?format=xml", content=clip10).status_code == 400


def test_known_speaker_count(service, clip10: bytes) -> None:
    r = call(service, "POST", "/v1/diarize?num_speakers=1", content=clip10)
    assert r.status_code == 200, r.text
    assert r.json()["num_speakers"] <= 1 and {s["speaker"] for s in r.json()["segments"]} <= {"SPEAKER_00"}
    assert call(service, "POST", "/v1/diarize", content=clip10).json()["warnings"] == []
    r = call(service, "POST", "/v1/diarize?num_speakers=20", content=clip10)  # more than 10 s can hold
    assert r.status_code == 200 and r.json()["num_speakers"] < 20
    assert "num_speakers=20 was asked for" in r.json()["warnings"][0]
    assert "num_speakers=20" in r.headers["x-diarization-warnings"]
    for bad in ("0", "two", "999"):
        r = call(service, "POST", f"/v1/diarize?num_speakers={bad}", content=clip10)
        assert r.status_code == 422 and "num_speakers" in r.json()["error"], r.text


def test_auth_and_admin_override(service, clip10: bytes) -> None:
    assert call(service, "POST", "/v1/diarize", key=None, content=clip10).status_code == 401
    assert call(service, "POST", "/v1/diarize", key="wrong", content=clip10).status_code == 401
    bearer = {"Authorization": "Bearer second-key"}
    assert call(service, "POST", "/v1/diarize", key=None, content=clip10, headers=bearer).status_code == 200
    assert call(service, "POST", "/v1/diarize?arm=distilhubert", content=clip10).status_code == 403
    admin = {"X-Admin-Key": ADMIN_KEY}
    r = call(service, "POST", "/v1/diarize?arm=distilhubert", content=clip10, headers=admin)
    assert r.status_code == 200 and r.json()["arm"] == "distilhubert"  # weight 0, forced
    assert call(service, "POST", "/v1/diarize?arm=nope", content=clip10, headers=admin).status_code == 404


def test_models_health_docs(service) -> None:
    models = call(service, "GET", "/v1/models").json()
    assert {a["arm"]: a["share"] for a in models["arms"]} == {"distilhubert": 0.0, "fast-cnn": 1.0}
    assert all(a["model_version"].startswith("sha256:") for a in models["arms"])
    assert call(service, "GET", "/v1/health").json()["status"] == "ok"
    assert call(service, "GET", "/docs").status_code == 200
    assert "/v1/diarize" in call(service, "GET", "/openapi.json").json()["paths"]


def test_every_request_is_logged(service, clip10: bytes) -> None:
    from sqlalchemy import select

    from flywheel.db import Prediction, make_engine

    client = "log-check-client"
    statuses = [
        call(service, "POST", "/v1/diarize", content=d, headers={"X-Client-Id": client}).status_code
        for d in (clip10, b"junk", clip10, b"")
    ]
    assert statuses == [200, 415, 200, 400]
    assert service.logger.flush(30)
    engine = make_engine(service.settings.resolved_database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Prediction).where(Prediction.client_id == client)).all()
    engine.dispose()
    assert sorted(r.http_status for r in rows) == [200, 200, 400, 415]
    ok = [r for r in rows if r.status == "ok"]
    assert all(
        r.arm == "fast-cnn" and r.model_version and r.audio_sha256 and r.segments is not None for r in ok
    )
    from flywheel.audio_store import AudioStore

    store = AudioStore(service.settings.resolved_audio_dir)
    assert all(store.path_for(r.audio_sha256).exists() for r in ok)
    audio, sr = sf.read(io.BytesIO(store.read(ok[0].audio_sha256)))
    assert sr == 16000 and len(audio) == 160000
