"""Who spoke when: pyannote.core annotations plus RTTM and UEM files.

RTTM lines: ``SPEAKER <uri> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>``.
UEM lines:  ``<uri> 1 <start> <end>`` (the scored part of each file).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from pyannote.core import Annotation, Segment, Timeline

Turn = tuple[float, float, str]


def annotation_from_turns(turns: Iterable[Turn], uri: str = "audio") -> Annotation:
    """Build an annotation from ``(start, end, speaker)`` turns; overlapping turns are kept."""
    annotation = Annotation(uri=uri)
    for i, (start, end, speaker) in enumerate(turns):
        if end > start:
            annotation[Segment(float(start), float(end)), f"t{i}"] = str(speaker)
    return annotation


def turns_of(annotation: Annotation) -> list[Turn]:
    """``(start, end, speaker)`` turns sorted by start time."""
    return [(seg.start, seg.end, str(label)) for seg, _, label in annotation.itertracks(yield_label=True)]


def read_rttm(path: str | Path) -> dict[str, Annotation]:
    """Read an RTTM file into one annotation per URI."""
    turns: dict[str, list[Turn]] = defaultdict(list)
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise ValueError(f"{path}:{lineno}: malformed RTTM line: {line!r}")
        uri, start, duration, speaker = fields[1], float(fields[3]), float(fields[4]), fields[7]
        turns[uri].append((start, start + duration, speaker))
    return {uri: annotation_from_turns(t, uri=uri) for uri, t in turns.items()}


def rttm_lines(annotation: Annotation, uri: str | None = None) -> list[str]:
    """Format an annotation as RTTM lines (times rounded to the millisecond)."""
    uri = uri or annotation.uri or "audio"
    return [
        f"SPEAKER {uri} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>"
        for start, end, speaker in turns_of(annotation)
    ]


def write_rttm(path: str | Path, annotations: Annotation | Iterable[Annotation]) -> None:
    """Write one or several annotations to an RTTM file."""
    if isinstance(annotations, Annotation):
        annotations = [annotations]
    lines = [line for ann in annotations for line in rttm_lines(ann)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{line}\n" for line in lines))


def read_uem(path: str | Path) -> dict[str, Timeline]:
    """Read a UEM file into one timeline per URI."""
    segments: dict[str, list[Segment]] = defaultdict(list)
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 4:
            raise ValueError(f"{path}:{lineno}: malformed UEM line: {line!r}")
        segments[fields[0]].append(Segment(float(fields[2]), float(fields[3])))
    return {uri: Timeline(segs, uri=uri) for uri, segs in segments.items()}


def write_uem(path: str | Path, uri: str, timeline: Timeline | Iterable[Segment]) -> None:
    """Write the scored regions of one file as UEM."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{uri} 1 {s.start:.3f} {s.end:.3f}\n" for s in timeline))


def relabel(annotation: Annotation, prefix: str = "SPEAKER_") -> Annotation:
    """Rename speakers to ``SPEAKER_00, SPEAKER_01, ...`` in order of first appearance."""
    order = {}
    for _, _, label in annotation.itertracks(yield_label=True):
        order.setdefault(label, f"{prefix}{len(order):02d}")
    return annotation.rename_labels(mapping=order)


def overlap_ratio(annotation: Annotation) -> float:
    """Fraction of speech time where two or more speakers talk at once."""
    speech = annotation.get_timeline().support().duration()
    if speech == 0:
        return 0.0
    overlap = annotation.get_overlap().duration()
    return overlap / speech
