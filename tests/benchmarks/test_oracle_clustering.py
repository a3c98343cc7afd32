"""The oracle-clustering diagnosis: slots map to the reference speaker they overlap most."""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment

from benchmarks.oracle_clustering import oracle_assignment, speaker_count_table
from flywheel.systems.neural import LocalResults
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
    assignment, speakers = oracle_assignment(item, local, 0.04)
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
