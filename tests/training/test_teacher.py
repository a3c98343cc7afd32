"""Embedding distillation: teacher d-vectors of the inventory speakers and the distillation loss."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from training.teacher import (
    compute_teacher_vectors,
    load_teacher_targets,
    save_teacher_vectors,
    speaker_windows,
)


def test_speaker_windows_cover_the_speech_span() -> None:
    windows = speaker_windows([(0.5, 2.0), (2.5, 5.0)], 6.0)
    assert windows[0][0] == 0.5 and windows[-1][1] <= 5.0 + 1e-6
    assert all(abs((e - s) - 1.6) < 1e-6 for s, e in windows)
    assert speaker_windows([(1.0, 1.5)], 2.0) == [(1.0, 1.5)]  # short utterance: one window


def test_targets_are_centred_unit_vectors_in_training_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = np.abs(rng.standard_normal((4, 8))).astype(np.float32)  # positive like d-vectors
    save_teacher_vectors(tmp_path / "t.npz", ["a", "b", "c", "d"], vectors)
    targets = load_teacher_targets(tmp_path / "t.npz", {"d": 0, "a": 1, "b": 2, "c": 3})
    assert targets.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(targets, axis=1), 1.0, rtol=1e-5)
    centred = vectors - vectors.mean(axis=0)
    expected_d = centred[3] / np.linalg.norm(centred[3])
    np.testing.assert_allclose(targets[0], expected_d, rtol=1e-5)
    with pytest.raises(KeyError, match="no teacher vector"):
        load_teacher_targets(tmp_path / "t.npz", {"a": 0, "zz": 1})


@pytest.fixture(scope="module")
def smoke_teacher(smoke_data: Path) -> Path:
    from pipelines.inventory import Inventory

    inventory = Inventory.load(smoke_data / "inventory" / "smoke")
    speakers, vectors = compute_teacher_vectors(inventory, max_utterances=2)
    assert len(speakers) == len(inventory.by_speaker("train"))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    path = smoke_data / "teacher" / "smoke.npz"
    save_teacher_vectors(path, speakers, vectors)
    return path


def test_distillation_trains_and_lowers_the_cosine_distance(
    smoke_teacher: Path, smoke_data: Path, smoke_checkpoint: Path, params: dict, tmp_path: Path
) -> None:
    """A recipe continuing the smoke model with the teacher loss (as v5's `distil` did): it must drop."""
    from training.train import train

    p = copy.deepcopy(params)
    p["train"]["fast-cnn"]["smoke"].update(
        init_from=str(smoke_checkpoint), teacher="teacher/smoke.npz", distill_weight=5.0, epochs=2, patience=2
    )
    summary = train(
        "fast-cnn", "smoke", out_dir=tmp_path / "ckpt", resume=False, params=p, data_dir=smoke_data
    )
    first, last = summary["history"][0]["distill_loss"], summary["history"][-1]["distill_loss"]
    assert 0.0 < last < first <= 2.0


def test_distillation_needs_a_teacher(smoke_data: Path, params: dict, tmp_path: Path) -> None:
    from training.train import train

    p = copy.deepcopy(params)
    p["train"]["fast-cnn"]["smoke"].update(distill_weight=1.0, teacher=None)
    with pytest.raises(ValueError, match="teacher"):
        train("fast-cnn", "smoke", out_dir=tmp_path / "x", resume=False, params=p, data_dir=smoke_data)
