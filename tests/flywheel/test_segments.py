"""RTTM/UEM round trips and annotation helpers."""

from __future__ import annotations

from pyannote.core import Segment, Timeline

from flywheel.segments import (
    annotation_from_turns,
    overlap_ratio,
    read_rttm,
    read_uem,
    relabel,
    turns_of,
    write_rttm,
    write_uem,
)


def test_rttm_round_trip_keeps_overlap(tmp_path) -> None:
    ann = annotation_from_turns([(0.0, 2.5, "alice"), (2.0, 4.0, "bob"), (5.0, 6.25, "alice")], uri="meeting")
    write_rttm(tmp_path / "m.rttm", ann)
    back = read_rttm(tmp_path / "m.rttm")["meeting"]
    assert turns_of(back) == turns_of(ann)
    assert back.get_overlap().duration() == ann.get_overlap().duration() == 0.5


def test_rttm_several_uris(tmp_path) -> None:
    a = annotation_from_turns([(0, 1, "x")], uri="a")
    b = annotation_from_turns([(1, 2, "y")], uri="b")
    write_rttm(tmp_path / "ab.rttm", [a, b])
    assert set(read_rttm(tmp_path / "ab.rttm")) == {"a", "b"}


def test_uem_round_trip(tmp_path) -> None:
    write_uem(tmp_path / "a.uem", "a", Timeline([Segment(0.0, 30.0), Segment(40.0, 50.5)]))
    back = read_uem(tmp_path / "a.uem")["a"]
    assert [(s.start, s.end) for s in back] == [(0.0, 30.0), (40.0, 50.5)]


def test_relabel_and_overlap_ratio() -> None:
    ann = annotation_from_turns([(0, 2, "b"), (1, 3, "a")])
    assert sorted(relabel(ann).labels()) == ["SPEAKER_00", "SPEAKER_01"]
    assert overlap_ratio(ann) == 1 / 3
