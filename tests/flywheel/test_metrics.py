"""DER sanity: identity is 0, relabelling is free, an empty hypothesis misses everything."""

from __future__ import annotations

import pytest
from pyannote.core import Annotation, Segment, Timeline

from flywheel.metrics import DERBreakdown, aggregate, der_breakdown, paired_bootstrap
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


def _file(errors: float, total: float = 100.0) -> DERBreakdown:
    return DERBreakdown(der=errors / total, missed=errors, false_alarm=0.0, confusion=0.0, total=total)


def test_paired_bootstrap_finds_a_gain_on_every_file() -> None:
    a = [_file(20.0 + i % 5) for i in range(40)]
    b = [_file(e.missed - 3.0) for e in a]
    diff = paired_bootstrap(a, b, samples=500)
    assert diff.delta == pytest.approx(aggregate(b).der - aggregate(a).der)
    assert diff.delta == pytest.approx(-0.03)
    assert diff.high < 0
    assert diff.verdict() == "B better"
    assert diff.b_better_share == 1.0


def test_paired_bootstrap_calls_a_mixed_result_a_draw() -> None:
    a = [_file(20.0) for _ in range(40)]
    b = [_file(28.0 if i % 2 else 13.0) for i in range(40)]  # half much worse, half much better
    diff = paired_bootstrap(a, b, samples=1000)
    assert diff.low < 0 < diff.high
    assert diff.verdict() == "no significant difference"
    assert paired_bootstrap(b, a, samples=1000).verdict() == "no significant difference"


def test_paired_bootstrap_rejects_unpaired_lists() -> None:
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([_file(1.0)], [_file(1.0), _file(2.0)])
