"""Teacher targets for logged traffic: the pseudo-labelled set as a pool shard, teacher turns as labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flywheel.audio import SAMPLE_RATE, load_audio
from flywheel.audio_store import AudioStore
from flywheel.pretrained import CAMPPLUS_ONNX, SEGMENTATION_ONNX
from flywheel.segments import read_rttm, turns_of
from pipelines.pseudo_dataset import snapshot_rows
from training.data import ChunkConfig, frame_labels

needs_teacher = pytest.mark.skipif(
    not (SEGMENTATION_ONNX.exists() and CAMPPLUS_ONNX.exists()),
    reason="models/teacher/*.onnx missing: run `bash scripts/setup_teacher.sh`",
)


@needs_teacher
def test_pseudo_set_becomes_a_shard_with_the_teachers_labels(
    smoke_data: Path, params: dict, tmp_path: Path
) -> None:
    from training.distill import PoolChunks
    from training.pseudo_pool import LABELS, build_pseudo_pool

    wav = sorted((smoke_data / "conversations" / "smoke" / "dev").glob("*.wav"))[0]
    store = AudioStore(tmp_path / "audio")
    sha = store.put_bytes(wav.read_bytes())
    teacher_turns = [list(t) for t in turns_of(read_rttm(wav.with_suffix(".rttm"))[wav.stem])]
    seconds = len(load_audio(wav)) / SAMPLE_RATE
    row = {
        "request_id": "req-1",
        "audio_sha256": sha,
        "status": "ok",
        "segments": teacher_turns,  # stands in for the teacher's pseudo-label
        "duration_s": seconds,
        "confidence": 0.9,
        "teacher_version": "teacher-test",
        "model_version": "fast-cnn-6",
    }
    dataset = tmp_path / "pseudo-set"
    snapshot_rows([row], dataset, store.root, min_confidence=0.7)
    chunk = ChunkConfig(**params["models"]["fast-cnn"]["chunk"])
    info = build_pseudo_pool(dataset, tmp_path / "pool", chunk, seed=1)
    windows = int(seconds // 10)
    assert info["chunks"] == 2 * windows and info["source"] == "pseudo" and info["labels"] == LABELS
    assert "not reviewed" in info["labels"] and info["min_confidence"] == 0.7
    assert info["teacher_versions"] == ["teacher-test"]
    assert info["spans"] == [
        {"item_id": "req-1", "seconds": pytest.approx(seconds, abs=1e-3), "chunks": 2 * windows}
    ]
    shard = tmp_path / "pool" / "shard-000"
    stored = json.loads((shard / "info.json").read_text())
    assert stored["source"] == "pseudo" and stored["labels"] == LABELS  # the provenance says so
    labels, audio = np.load(shard / "labels.npy"), np.load(shard / "audio.npy")
    teacher = np.load(shard / "teacher.npy").astype(np.float32)
    assert audio.shape[0] == labels.shape[0] == teacher.shape[0] == 2 * windows
    # chunk k covers 5k .. 5k + 5 s of the whole file, labelled with the teacher's turns there
    reference = read_rttm(dataset / "req-1.rttm")["req-1"]
    for k in range(2 * windows):
        expected, _ = frame_labels(reference, 5.0 * k, chunk)
        assert np.array_equal(labels[k], expected.astype(np.uint8))
    assert np.allclose(teacher.sum(-1), 1.0, atol=1e-2)
    assert json.loads((tmp_path / "pool" / "pool.json").read_text())["items"] == 1
    assert len(PoolChunks(tmp_path / "pool")) == 2 * windows  # what a distillation recipe reads


def test_a_folder_that_is_not_a_pseudo_set_is_a_clear_error(params: dict, tmp_path: Path) -> None:
    from training.pseudo_pool import build_pseudo_pool

    chunk = ChunkConfig(**params["models"]["fast-cnn"]["chunk"])
    with pytest.raises(FileNotFoundError, match="flywheel retrain pseudo-dataset"):
        build_pseudo_pool(tmp_path / "none", tmp_path / "pool", chunk, seed=1)
