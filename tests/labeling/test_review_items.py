"""Review items, task spans and region conversion: pure functions, no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from labeling.items import ReviewItem, TaskSpan, read_items, split_spans, task_key, write_items
from labeling.label_config import (
    label_config,
    regions,
    segments_from_result,
    speaker_mapping,
    speakers_in_config,
)
from labeling.pull import item_files


def test_review_item_jsonl_roundtrip(tmp_path: Path) -> None:
    item = ReviewItem("req-1", Path("a.wav"), 12.0, ((0.5, 2.0, "A"), (1.0, 3.0, "B")), "teacher-v1", 0.8)
    write_items(tmp_path / "items.jsonl", [item])
    (tmp_path / "items.jsonl").write_text((tmp_path / "items.jsonl").read_text() + "\n")  # blank line
    assert read_items(tmp_path / "items.jsonl") == [item]
    # "audio" is accepted for "audio_path"
    assert ReviewItem.from_dict({"item_id": "x", "audio": "b.wav", "duration": 1}).audio_path == Path("b.wav")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"item_id": "has space"},
        {"item_id": "../escape"},
        {"duration": 0.0},
        {"segments": ((2.0, 1.0, "A"),)},
    ],
)
def test_review_item_rejects_bad_fields(kwargs: dict) -> None:
    fields = {"item_id": "ok", "audio_path": Path("a.wav"), "duration": 5.0, "segments": (), **kwargs}
    with pytest.raises(ValueError):
        ReviewItem(**fields)


def test_read_items_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"item_id": "a", "audio_path": "a.wav", "duration": 1}\n{"item_id": "b"}\n')
    with pytest.raises(ValueError, match=r"items.jsonl:2"):
        read_items(path)


def test_split_spans_at_most_max_and_contiguous() -> None:
    assert split_spans(12.0) == [TaskSpan(0.0, 12.0)]
    assert split_spans(300.0) == [TaskSpan(0.0, 300.0)]
    spans = split_spans(3600.0)
    assert len(spans) == 12 and all(s.duration <= 300.0 for s in spans)
    spans = split_spans(620.0)
    assert [s.offset for s in spans] == [0.0, 206.667, 413.333]
    assert spans[-1].end == pytest.approx(620.0)
    assert task_key("x", spans[1]) == "x@206667"


def test_regions_clip_to_span_and_back() -> None:
    segments = [(10.0, 20.0, "B"), (200.0, 215.0, "A"), (500.0, 510.0, "B")]
    mapping = speaker_mapping(segments)
    assert mapping == {"B": "Speaker 1", "A": "Speaker 2"}
    first = regions(segments, 0.0, 206.667, mapping)
    assert [(r["value"]["start"], r["value"]["end"], r["value"]["labels"]) for r in first] == [
        (10.0, 20.0, ["Speaker 1"]),
        (200.0, 206.667, ["Speaker 2"]),
    ]
    second = regions(segments, 206.667, 206.666, mapping)
    assert [(r["value"]["start"], r["value"]["end"]) for r in second] == [(0.0, 8.333)]
    assert segments_from_result(second, 206.667, 206.666) == [(206.667, 215.0, "Speaker_2")]


def test_label_config_speaker_count() -> None:
    config = label_config(4)
    assert speakers_in_config(config) == 4
    assert '<Audio name="audio" value="$audio"' in config and 'toName="audio"' in config


def test_item_files_merge_adjacent_reviewed_spans() -> None:
    records = [
        {"offset": 0.0, "duration": 206.667, "segments": [[1.0, 2.5, "Speaker_1"]]},
        {"offset": 206.667, "duration": 206.666, "segments": [[210.0, 211.0, "Speaker_2"]]},
        {"offset": 500.0, "duration": 100.0, "segments": []},  # reviewed: nobody speaks
    ]
    files = item_files("rec", records)
    assert files["uem/rec.uem"] == "rec 1 0.000 413.333\nrec 1 500.000 600.000\n"
    assert files["rttm/rec.rttm"].splitlines() == [
        "SPEAKER rec 1 1.000 1.500 <NA> <NA> Speaker_1 <NA> <NA>",
        "SPEAKER rec 1 210.000 1.000 <NA> <NA> Speaker_2 <NA> <NA>",
    ]
