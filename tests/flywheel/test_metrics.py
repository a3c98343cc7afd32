"""DER sanity: identity is 0, relabelling is free, an empty hypothesis misses everything."""

from __future__ import annotations

import pytest
from pyannote.core import Annotation, Segment, Timeline

from flywheel.metrics import aggregate, der_breakdown
from flywheel.segments import annotation_from_turns

REF = annotation_from_turns([(0.0, 4.0, "A"), (3.0, 6.0, "B"), (7.0, 9.0, "A")], uri="f")
UEM = Timeline([Segment(0.0, 10.0)], uri="f")


def test_reference_against_itself_is_zero() -> None:
    assert der_breakdown(REF, REF, UEM).der == 0.0


def test_relabelled_copy_is_zero() -> None:
    renamed = REF.rename_labels({"A": "SPEAKER_07", "B": "SPEAKER_01"})
    assert der_breakdown(REF, renamed, UEM).der == 0.0


def test_empty_hypothesis_is_one() -> None:
    b = der_breakdown(REF, Annotation(uri="f"), UEM)
    assert b.der == 1.0
    assert b.missed == b.total


def test_one_speaker_hypothesis_counts_confusion_and_missed_overlap() -> None:
    b = der_breakdown(REF, annotation_from_turns([(0.0, 6.0, "X"), (7.0, 9.0, "X")], uri="f"), UEM)
    # 1 s of overlap is missed (one of two speakers); B's 2 s alone are confused
    assert b.missed == pytest.approx(1.0)
    assert b.confusion == pytest.approx(2.0)
    assert b.speaker_count_error == 1


def test_collar_forgives_boundaries() -> None:
    shifted = annotation_from_turns([(0.1, 4.1, "A"), (3.1, 6.1, "B"), (7.1, 9.1, "A")], uri="f")
    assert (
        der_breakdown(REF, shifted, UEM, collar=0.25).der < der_breakdown(REF, shifted, UEM, collar=0.0).der
    )


def test_aggregate_sums_components() -> None:
    a = der_breakdown(REF, REF, UEM)
    b = der_breakdown(REF, Annotation(uri="f"), UEM)
    assert aggregate([a, b]).der == pytest.approx(0.5)


def test_summary_line_reports_rates_of_reference_speech() -> None:
    from flywheel.metrics import DERBreakdown

    b = DERBreakdown(der=0.25, missed=10.0, false_alarm=5.0, confusion=10.0, total=100.0)
    assert b.summary() == "DER 25.00%  miss 10.00%  false alarm  5.00%  confusion 10.00%"
