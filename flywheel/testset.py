"""Evaluation sets on disk: a directory of ``<uri>.wav`` + ``<uri>.rttm`` (+ optional ``<uri>.uem``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyannote.core import Annotation, Segment, Timeline

from flywheel.audio import duration_of
from flywheel.segments import read_rttm, read_uem

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass
class TestItem:
    """One file of an evaluation set."""

    uri: str
    audio_path: Path
    reference: Annotation
    uem: Timeline


def iter_test_set(directory: str | Path) -> Iterator[TestItem]:
    """Yield the files of an evaluation set, sorted by URI.

    A file without RTTM is an error (a test set must be fully labelled); without UEM the whole
    file is scored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"test set directory not found: {directory}")
    audio = sorted(p for p in directory.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not audio:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {directory}")
    for path in audio:
        uri = path.stem
        rttm = path.with_suffix(".rttm")
        if not rttm.exists():
            raise FileNotFoundError(f"missing reference {rttm}")
        reference = read_rttm(rttm).get(uri, Annotation(uri=uri))
        reference.uri = uri
        uem_path = path.with_suffix(".uem")
        if uem_path.exists():
            uem = read_uem(uem_path)[uri]
        else:
            uem = Timeline([Segment(0.0, duration_of(path))], uri=uri)
        yield TestItem(uri=uri, audio_path=path, reference=reference, uem=uem)
