"""flywheel/threshold_scan.py: DER per clustering threshold, the model run once per file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from pyannote.core import Annotation, Segment, Timeline

from flywheel.testset import TestItem
from flywheel.threshold_scan import score_thresholds


class _Reclusterable:
    """Stands in for a neural system: one prepare per file, a threshold-dependent clustering."""

    name = "stand-in"
    threshold = 0.5

    def __init__(self) -> None:
        self.prepared = 0

    def diarize(self, waveform: np.ndarray, uri: str = "file") -> Annotation:
        return self.cluster(self.prepare(waveform), self.threshold, uri)

    def prepare(self, waveform: np.ndarray) -> int:
        self.prepared += 1
        return len(waveform)

    def cluster(self, prepared: int, threshold: float, uri: str) -> Annotation:
        hyp = Annotation(uri=uri)
        hyp[Segment(0.0, 1.0)] = "A"
        hyp[Segment(1.0, 2.0)] = "A" if threshold > 0.5 else "B"  # a high threshold merges the speakers
        return hyp


def test_each_file_is_prepared_once_and_scored_at_every_threshold(tmp_path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(32000, dtype=np.float32), 16000)
    ref = Annotation(uri="a")
    ref[Segment(0.0, 1.0)] = "x"
    ref[Segment(1.0, 2.0)] = "y"
    item = TestItem(uri="a", audio_path=wav, reference=ref, uem=Timeline([Segment(0.0, 2.0)]))
    system = _Reclusterable()
    rows = score_thresholds(system, [item], [0.3, 0.7])
    assert system.prepared == 1
    assert [r["threshold"] for r in rows] == [0.3, 0.7]
    assert rows[0]["der"] == pytest.approx(0.0) and rows[1]["der"] == pytest.approx(0.5)


def test_no_thresholds_or_no_way_to_recluster_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="no thresholds"):
        score_thresholds(object(), [], [])
    wav = tmp_path / "b.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    item = TestItem(uri="b", audio_path=wav, reference=Annotation(uri="b"), uem=Timeline([Segment(0, 1.0)]))
    with pytest.raises(TypeError, match="cannot re-cluster"):
        score_thresholds(object(), [item], [0.5])
