"""The local-speaker diagnosis: slot purity, EER and nearest-centroid accuracy by solo speech."""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment

from benchmarks.embedding_quality import BinStats, add_recording, equal_error_rate, slot_purity
from flywheel.systems.neural import LocalResults
from flywheel.testset import TestItem


def test_a_slot_that_spans_two_voices_is_impure() -> None:
    ref = Annotation(uri="x")
    ref[Segment(0.0, 1.0)] = "alice"
    ref[Segment(1.0, 2.0)] = "bob"
    ref[Segment(2.0, 2.4), "t1"] = "alice"
    ref[Segment(2.0, 2.4), "t2"] = "carol"  # overlap: not counted
    activity = np.zeros((1, 60, 3), dtype=np.uint8)
    activity[0, :50, 0] = 1  # 0-2 s: alice then bob in one slot
    activity[0, 50:, 1] = 1  # 2-2.4 s: overlapped only
    local = LocalResults(
        activity=activity,
        embeddings=np.zeros((1, 3, 4), dtype=np.float32),
        single_frames=activity.sum(axis=1),
        chunk_frames=np.array([0]),
        num_frames=60,
        duration=2.4,
    )
    item = TestItem(uri="x", audio_path=None, reference=ref, uem=None)  # type: ignore[arg-type]
    assert slot_purity(item, local, 0.04) == (25, 50)


def test_equal_error_rate() -> None:
    assert equal_error_rate(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 0.0
    rng = np.random.default_rng(0)
    same, other = rng.normal(size=4000), rng.normal(size=4000)
    assert abs(equal_error_rate(same, other) - 0.5) < 0.05
    assert np.isnan(equal_error_rate(np.array([]), other))


def test_recordings_fill_the_bins_of_their_solo_speech() -> None:
    """Two speakers with clean embeddings: every local speaker is nearest its own centroid, and only
    pairs whose two sides fall in one bin are scored."""
    edges = np.array([0.5, 2.0, 5.0])
    bins = [BinStats(), BinStats()]
    emb = np.array([[1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0, 1, 0.1]], dtype=np.float32)
    seconds = np.array([1.0, 1.0, 3.0, 3.0])
    truth = np.array([0, 0, 1, 1])
    add_recording(bins, edges, emb, seconds, truth)
    assert [b.slots for b in bins] == [2, 2] and [b.hits for b in bins] == [2, 2]
    assert [len(np.concatenate(b.same)) for b in bins] == [1, 1]
    assert [len(np.concatenate(b.different)) for b in bins] == [0, 0]  # cross-bin pairs are left out


def test_the_release_model_on_the_smoke_dev_set(smoke_data, tmp_path) -> None:
    import json

    from benchmarks.embedding_quality import main

    main(
        system_name="fast-cnn",
        model_path=None,
        dev_set=smoke_data / "conversations" / "smoke" / "dev",
        step=None,
        bins="0.5,2,12",
        out_dir=tmp_path,
    )
    report = json.loads((tmp_path / "embedding_quality.json").read_text())
    assert 0.5 < report["slot_purity"] <= 1.0 and len(report["bins"]) == 2
    assert sum(b["local_speakers"] for b in report["bins"]) > 0
    assert (tmp_path / "quality_by_solo_speech.png").stat().st_size > 0
