"""Chunking, clustering and stitching of the neural pipeline, with a scripted (oracle-like) backend."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.audio import SAMPLE_RATE
from flywheel.metrics import der_breakdown
from flywheel.segments import annotation_from_turns
from flywheel.stitching import aggregate, binarize, smooth, to_annotation
from flywheel.systems.neural import (
    POWERSET,
    LocalResults,
    NeuralDiarizer,
    NeuralParams,
    SpeakerAssignment,
    speaker_probabilities,
)

FRAME_S = 0.04
CHUNK_S = 5.0


class ScriptedBackend:
    """Plays back a known 2-speaker timeline: speaker A in [0, 12) s, B in [10, 20) s."""

    def __init__(self, diarizer_ref: list[NeuralDiarizer]):
        self.ref = diarizer_ref
        self.calls = 0
        self.offset = 0

    def __call__(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, _, t = feats.shape
        frames = t // 4
        logprobs = np.full((b, frames, 7), -20.0, dtype=np.float32)
        emb = np.zeros((b, 3, 4), dtype=np.float32)
        starts = self.ref[0]._starts[self.offset : self.offset + b]
        self.offset += b
        for i, s in enumerate(starts):
            times = s / SAMPLE_RATE + (np.arange(frames) + 0.5) * FRAME_S
            a, bb = times < 12.0, (times >= 10.0) & (times < 20.0)
            # slot order deliberately differs between chunks: clustering must undo it
            swap = i % 2 == 1
            sa, sb = (2, 1) if swap else (1, 2)
            cls = np.zeros(frames, dtype=int)
            cls[a & ~bb], cls[bb & ~a] = sa, sb
            cls[a & bb] = 4
            logprobs[i, np.arange(frames), cls] = 0.0
            emb[i, sa - 1] = [1, 0, 0, 0]
            emb[i, sb - 1] = [0, 1, 0, 0]
        return logprobs, emb


def make(params: NeuralParams) -> NeuralDiarizer:
    holder: list[NeuralDiarizer] = []
    d = NeuralDiarizer(ScriptedBackend(holder), CHUNK_S, FRAME_S, params)
    holder.append(d)
    return d


def test_chunks_cover_the_whole_file_on_frame_boundaries() -> None:
    d = make(NeuralParams(step_s=2.5))
    starts = d.chunk_starts(int(23.3 * SAMPLE_RATE))
    assert starts[0] == 0 and starts[-1] + CHUNK_S * SAMPLE_RATE >= 23.3 * SAMPLE_RATE
    assert all(s % int(FRAME_S * SAMPLE_RATE) == 0 for s in starts)
    assert d.chunk_starts(SAMPLE_RATE).tolist() == [0]  # shorter than a chunk: one padded chunk
    assert np.diff(starts).max() <= 2.5 * SAMPLE_RATE


def test_a_clip_of_two_steps_takes_no_sliver_chunk() -> None:
    d = make(NeuralParams(step_s=2.5))
    frame = int(FRAME_S * SAMPLE_RATE)
    starts = d.chunk_starts(int((CHUNK_S + 5.0) * SAMPLE_RATE))
    assert len(starts) == 3 and np.diff(starts).min() >= 2.5 * SAMPLE_RATE - frame


@pytest.mark.parametrize(
    "params",
    [
        NeuralParams(step_s=2.5, threshold=0.5),
        NeuralParams(step_s=1.25, threshold=0.5, min_cluster_share=0.05, refine_iterations=5),
        NeuralParams(step_s=2.5, threshold=0.5, stitching="hard"),
    ],
    ids=["plain", "refined", "hard-stitching"],
)
def test_recovers_two_speakers_with_overlap(params: NeuralParams) -> None:
    d = make(params)
    waveform = np.zeros(int(20 * SAMPLE_RATE), dtype=np.float32)
    d._starts = d.chunk_starts(len(waveform))
    hyp = d.diarize(waveform, uri="x")
    ref = annotation_from_turns([(0, 12, "A"), (10, 20, "B")], uri="x")
    assert len(hyp.labels()) == 2
    assert hyp.get_overlap().duration() > 1.5
    assert der_breakdown(ref, hyp).der < 0.02


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_known_speaker_count_replaces_the_estimate(count: int) -> None:
    d = make(NeuralParams(step_s=2.5, threshold=0.5, min_cluster_share=0.05, refine_iterations=5))
    waveform = np.zeros(int(20 * SAMPLE_RATE), dtype=np.float32)
    d._starts = d.chunk_starts(len(waveform))
    local = d.prepare(waveform)
    # the scripted embeddings hold two speakers: asking for 3 cannot invent a third
    assert len(d.cluster(local, uri="x", num_speakers=count).labels()) == min(count, 2)


def test_binarize_keeps_top_count() -> None:
    scores = np.array([[0.9, 0.8, 0.1], [0.9, 0.2, 0.0]])
    out = binarize(scores, np.array([2.0, 1.0]))
    assert out.tolist() == [[True, True, False], [True, False, False]]


def test_to_annotation_fills_short_gaps_and_drops_short_turns() -> None:
    binary = np.zeros((100, 1), dtype=bool)
    binary[10:40, 0] = binary[42:60, 0] = binary[80:81, 0] = True
    ann = to_annotation(binary, 0.1, 10.0, min_duration_off=0.5, min_duration_on=0.5)
    assert [(round(s.start, 2), round(s.end, 2)) for s in ann.get_timeline()] == [(1.0, 6.0)]


def test_powerset_table_matches_training() -> None:
    from training.models.powerset import CLASSES

    for c, active in enumerate(CLASSES):
        assert set(np.flatnonzero(POWERSET[c])) == set(active)


def test_speaker_probabilities_sum_the_powerset_classes_of_each_slot() -> None:
    p = np.array([0.1, 0.2, 0.05, 0.05, 0.3, 0.2, 0.1])  # classes: {}, 0, 1, 2, 01, 02, 12
    probs = speaker_probabilities(np.log(p)[None, None, :])[0, 0]
    assert probs == pytest.approx([0.2 + 0.3 + 0.2, 0.05 + 0.3 + 0.1, 0.05 + 0.2 + 0.1])


def test_soft_stitching_keeps_the_more_confident_of_two_disagreeing_chunks() -> None:
    # frames 0-9: chunk 0 hears global speaker 0 at 0.6, chunk 1 hears global speaker 1 at 0.9, one at
    # a time; frames 10-19: chunk 2 hears speaker 0 alone. The 0/1 decisions tie in frames 0-9 (the
    # tie goes to speaker 0, the first column: one speaker throughout); the probabilities do not.
    frames = 10
    activity = np.zeros((3, frames, 3), dtype=np.uint8)
    activity[:, :, 0] = 1
    probabilities = np.zeros((3, frames, 3), dtype=np.float16)
    probabilities[:, :, 0] = [[0.6], [0.9], [1.0]]
    local = LocalResults(
        activity=activity,
        embeddings=np.zeros((3, 3, 4), dtype=np.float32),
        single_frames=activity.sum(axis=1),
        chunk_frames=np.array([0, 0, frames]),
        num_frames=2 * frames,
        duration=2 * frames * FRAME_S,
        probabilities=probabilities,
    )
    assignment = SpeakerAssignment(np.array([[0, -1, -1], [1, -1, -1], [0, -1, -1]]), 2)
    soft = make(NeuralParams(stitching="soft")).stitch(local, assignment, uri="x")
    hard = make(NeuralParams(stitching="hard")).stitch(local, assignment, uri="x")
    half = frames * FRAME_S
    assert [(round(s.start, 2), round(s.end, 2), lab) for s, _, lab in soft.itertracks(yield_label=True)] == [
        (0.0, round(half, 2), "SPEAKER_00"),
        (round(half, 2), round(2 * half, 2), "SPEAKER_01"),
    ]
    assert soft.get_overlap().duration() == 0.0
    assert hard.labels() == ["SPEAKER_00"]


def test_unknown_stitching_is_refused() -> None:
    with pytest.raises(ValueError, match="stitching"):
        NeuralParams(stitching="mean")


def test_smoothing_removes_a_one_frame_flicker_and_keeps_a_turn() -> None:
    scores = np.zeros((20, 2), dtype=np.float32)
    scores[:, 0] = 1.0
    scores[10, 0], scores[10, 1] = 0.0, 1.0  # one frame of speaker 1 inside speaker 0's turn
    count = np.ones(20, dtype=np.float32)
    smoothed, smoothed_count = smooth(scores, count, window_s=0.12, frame_s=FRAME_S)  # 3 frames
    binary = binarize(smoothed, smoothed_count)
    assert binary[:, 0].all() and not binary[:, 1].any()
    assert smoothed_count == pytest.approx(count)
    same, _ = smooth(scores, count, window_s=0.06, frame_s=FRAME_S)  # under 3 frames: unchanged
    assert same is scores


def test_smoothing_windows_are_odd_and_centred() -> None:
    scores = np.zeros((9, 1), dtype=np.float32)
    scores[4] = 1.0
    for window_s in (0.2, 0.24):  # 5 and 6 frames -> both 5
        out, _ = smooth(scores, np.zeros(9, dtype=np.float32), window_s, FRAME_S)
        assert out[:, 0] == pytest.approx([0, 0, 0.2, 0.2, 0.2, 0.2, 0.2, 0, 0])


def test_stitching_is_the_plain_mean_of_the_covering_chunks() -> None:
    # two 4-frame chunks overlapping by 2 frames, one local speaker each, both mapped to speaker 0
    activity = np.zeros((2, 4, 3), dtype=np.float32)
    activity[0, :, 0], activity[1, :, 0] = 1.0, 0.5
    assignment = np.array([[0, -1, -1], [0, -1, -1]])
    scores, count = aggregate(activity, assignment, np.array([0, 2]), 6, 1)
    assert scores[:, 0] == pytest.approx([1.0, 1.0, 0.75, 0.75, 0.5, 0.5])
    assert count == pytest.approx(scores[:, 0])


def test_a_stored_uniform_chunk_weighting_is_ignored_and_hann_is_refused() -> None:
    """Models exported before `chunk_weighting` was removed (the release cards and ONNX metadata) carry
    "uniform", what stitching always does now: they load as before. "hann" is gone: refused, loudly."""
    from flywheel.systems.onnx_system import pipeline_settings

    stored = {"threshold": 0.5, "stitching": "soft", "chunk_weighting": "uniform"}
    assert NeuralParams.from_dict(stored) == NeuralParams(threshold=0.5, stitching="soft")
    assert pipeline_settings(stored) == {"threshold": 0.5, "stitching": "soft"}
    for load in (NeuralParams.from_dict, pipeline_settings):
        with pytest.raises(ValueError, match="chunk_weighting='hann' is no longer supported"):
            load({**stored, "chunk_weighting": "hann"})
