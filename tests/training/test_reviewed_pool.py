"""Teacher targets for reviewed recordings: the reviewed set, cropped to its UEM spans, as a pool shard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pyannote.core import Annotation, Segment

from flywheel.audio import load_audio
from flywheel.pretrained import CAMPPLUS_ONNX, SEGMENTATION_ONNX
from flywheel.segments import read_rttm
from training.data import ChunkConfig, frame_labels
from training.reviewed_pool import crop_reference

needs_teacher = pytest.mark.skipif(
    not (SEGMENTATION_ONNX.exists() and CAMPPLUS_ONNX.exists()),
    reason="models/teacher/*.onnx missing: run `bash scripts/setup_teacher.sh`",
)


def test_crop_reference_keeps_the_span_with_times_from_its_start() -> None:
    ref = Annotation(uri="x")
    ref[Segment(1.0, 4.0), "a"] = "A"
    ref[Segment(3.0, 12.0), "b"] = "B"
    ref[Segment(13.0, 14.0), "c"] = "A"
    cropped = crop_reference(ref, Segment(2.0, 10.0))
    turns = sorted(
        (round(s.start, 6), round(s.end, 6), k) for s, _, k in cropped.itertracks(yield_label=True)
    )
    assert turns == [(0.0, 2.0, "A"), (1.0, 8.0, "B")]


@needs_teacher
def test_reviewed_spans_become_chunks_with_the_reviewers_labels(
    smoke_data: Path, params: dict, tmp_path: Path
) -> None:
    from training.distill import PoolChunks
    from training.reviewed_pool import build_reviewed_pool

    wav = sorted((smoke_data / "conversations" / "smoke" / "dev").glob("*.wav"))[0]
    dataset = tmp_path / "reviewed-set"
    dataset.mkdir()
    shutil.copy(wav, dataset / "req-1.wav")
    reference = read_rttm(wav.with_suffix(".rttm"))[wav.stem]
    reference.uri = "req-1"
    (dataset / "req-1.rttm").write_text(
        "".join(
            f"SPEAKER req-1 1 {s.start:.3f} {s.duration:.3f} <NA> <NA> {k} <NA> <NA>\n"
            for s, _, k in reference.itertracks(yield_label=True)
        )
    )
    # reviewed: 2.0-27.5 s (two 10 s windows) and 28-33 s (shorter than a window: no chunk)
    (dataset / "req-1.uem").write_text("req-1 1 2.000 27.500\nreq-1 1 28.000 33.000\n")
    chunk = ChunkConfig(**params["models"]["fast-cnn"]["chunk"])
    info = build_reviewed_pool(dataset, tmp_path / "pool", chunk, seed=1)
    assert info["chunks"] == 4 and info["source"] == "reviewed"
    assert info["spans"] == [{"item_id": "req-1", "seconds": 25.5, "chunks": 4}]
    shard = tmp_path / "pool" / "shard-000"
    labels, audio = np.load(shard / "labels.npy"), np.load(shard / "audio.npy")
    teacher = np.load(shard / "teacher.npy").astype(np.float32)
    # chunk k covers 2 + 5k .. 7 + 5k s of the recording, labelled with the reviewed turns there
    cropped = crop_reference(read_rttm(dataset / "req-1.rttm")["req-1"], Segment(2.0, 27.5))
    for k in range(4):
        expected, _ = frame_labels(cropped, 5.0 * k, chunk)
        assert np.array_equal(labels[k], expected.astype(np.uint8))
    samples = load_audio(dataset / "req-1.wav")[32000 : 32000 + 80000]
    peak = float(np.max(np.abs(load_audio(dataset / "req-1.wav")[32000 : 32000 + 160000])))
    scaled = samples * min(1.0, 0.95 / (peak + 1e-9))  # no background: the audio as reviewed
    assert np.abs(audio[0].astype(np.float32) / 32767 - scaled).max() < 2e-4
    assert np.allclose(teacher.sum(-1), 1.0, atol=1e-2)
    speech = labels.sum(-1) > 0
    assert ((teacher[..., 0] < 0.5) == speech).mean() > 0.7  # the teacher hears the reviewed speech
    assert json.loads((tmp_path / "pool" / "pool.json").read_text())["items"] == 1
    assert len(PoolChunks(tmp_path / "pool")) == 4  # what a distillation recipe reads


@needs_teacher
def test_a_set_without_a_long_enough_span_is_a_clear_error(
    smoke_data: Path, params: dict, tmp_path: Path
) -> None:
    from training.reviewed_pool import build_reviewed_pool

    wav = sorted((smoke_data / "conversations" / "smoke" / "dev").glob("*.wav"))[0]
    dataset = tmp_path / "reviewed-set"
    dataset.mkdir()
    shutil.copy(wav, dataset / "req-2.wav")
    (dataset / "req-2.rttm").write_text("SPEAKER req-2 1 1.000 3.000 <NA> <NA> A <NA> <NA>\n")
    (dataset / "req-2.uem").write_text("req-2 1 0.000 8.000\n")
    chunk = ChunkConfig(**params["models"]["fast-cnn"]["chunk"])
    with pytest.raises(ValueError, match="no reviewed span of at least 10 s"):
        build_reviewed_pool(dataset, tmp_path / "pool", chunk, seed=1)
