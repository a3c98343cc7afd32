"""The oracle-clustering diagnosis: slots map to the reference speaker they overlap most."""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment

from benchmarks.oracle_clustering import (
    oracle_assignment,
    oracle_centroid_assignment,
    oracle_window_labels,
    speaker_count_table,
)
from flywheel.systems.neural import LocalResults, NeuralDiarizer, NeuralParams
from flywheel.testset import TestItem


def test_each_active_slot_gets_the_reference_speaker_it_overlaps() -> None:
    ref = Annotation(uri="x")
    ref[Segment(0.0, 2.0)] = "alice"
    ref[Segment(2.0, 4.0)] = "bob"
    activity = np.zeros((2, 50, 3), dtype=np.uint8)  # 2 chunks of 50 frames (40 ms), starts 0 and 50
    activity[0, :50, 1] = 1  # chunk 0, slot 1: 0-2 s -> alice
    activity[1, :50, 0] = 1  # chunk 1, slot 0: 2-4 s -> bob
    local = LocalResults(
        activity=activity,
        embeddings=np.zeros((2, 3, 4), dtype=np.float32),
        single_frames=activity.sum(axis=1),
        chunk_frames=np.array([0, 50]),
        num_frames=100,
        duration=4.0,
    )
    item = TestItem(uri="x", audio_path=None, reference=ref, uem=None)  # type: ignore[arg-type]
    assignment, speakers, _ = oracle_assignment(item, local, 0.04)
    assert speakers == 2
    assert assignment.tolist() == [[-1, 0, -1], [1, -1, -1]]


def test_speaker_count_table_splits_time_by_simultaneous_speakers() -> None:
    ref, hyp = Annotation(), Annotation()
    ref[Segment(0.0, 2.0)] = "a"
    ref[Segment(1.0, 3.0)] = "b"  # 1-2 s: two speakers
    hyp[Segment(0.0, 3.0)] = "x"  # always one
    table = speaker_count_table(ref, hyp, duration=4.0)
    assert table.shape == (4, 4)
    assert np.isclose(table[1, 1], 2.0) and np.isclose(table[2, 1], 1.0) and np.isclose(table[0, 0], 1.0)
    assert np.isclose(table.sum(), 4.0)


def test_oracle_centroids_come_from_the_truth_and_slots_are_assigned_by_embedding() -> None:
    """Centroids are the true speakers' mean embeddings; a short slot (too little speech to build a
    centroid) still goes where its embedding points, even against the reference."""
    ref = Annotation(uri="x")
    ref[Segment(0.0, 2.0)] = "alice"
    ref[Segment(2.0, 4.0)] = "bob"
    activity = np.zeros((2, 50, 3), dtype=np.uint8)
    activity[0, :, 0] = 1  # alice, 2 s alone
    activity[1, :, 1] = 1  # bob, 2 s alone
    activity[1, :5, 2] = 1  # 0.2 s at 2.0-2.2 s (bob's time), too short to enter clustering
    embeddings = np.zeros((2, 3, 4), dtype=np.float32)
    embeddings[0, 0] = [1, 0, 0, 0]
    embeddings[1, 1] = [0, 1, 0, 0]
    embeddings[1, 2] = [0.9, 0.1, 0, 0]  # sounds like alice
    local = LocalResults(
        activity=activity,
        embeddings=embeddings,
        single_frames=np.array([[50, 0, 0], [0, 45, 0]]),
        chunk_frames=np.array([0, 50]),
        num_frames=100,
        duration=4.0,
    )
    params = NeuralParams(min_embedding_s=0.5, min_active_s=0.1, refine_iterations=0)
    system = NeuralDiarizer(lambda f: (f, f), chunk_s=2.0, frame_s=0.04, params=params)
    item = TestItem(uri="x", audio_path=None, reference=ref, uem=None)  # type: ignore[arg-type]
    assignment, speakers, _ = oracle_centroid_assignment(system, item, local)
    assert speakers == 2
    assert assignment.tolist() == [[0, -1, -1], [-1, 1, 0]]


def test_each_teacher_window_gets_the_reference_speaker_it_overlaps_most() -> None:
    """The teacher's oracle row: a window over alice's turn is alice's, one straddling the change
    goes to whoever holds more of it."""
    from flywheel.systems.teacher import TeacherLocal

    ref = Annotation(uri="x")
    ref[Segment(0.0, 2.0)] = "alice"
    ref[Segment(2.0, 4.0)] = "bob"
    activity = np.zeros((1, 100, 3), dtype=np.uint8)
    local = TeacherLocal(
        activity=activity,
        embeddings=np.zeros((1, 3, 4), dtype=np.float32),
        single_frames=activity.sum(axis=1),
        chunk_frames=np.array([0]),
        num_frames=100,
        duration=4.0,
        window_frames=np.array([[0, 30], [40, 70], [70, 100]]),  # 0-1.2 s, 1.6-2.8 s, 2.8-4 s
        window_embeddings=np.zeros((3, 4), dtype=np.float32),
    )
    item = TestItem(uri="x", audio_path=None, reference=ref, uem=None)  # type: ignore[arg-type]
    labels, speakers = oracle_window_labels(item, local, 0.04)
    assert speakers == 2
    assert labels.tolist() == [0, 1, 1]
