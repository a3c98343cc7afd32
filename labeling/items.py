"""What goes into the review queue: :class:`ReviewItem`, its JSONL form, and the split into tasks.

One review item is one recording with the segments a model proposes for it (the teacher's
pseudo-labels, or what was served). ``flywheel label push --items items.jsonl`` reads one JSON object
per line::

    {"item_id": "req-0001", "audio_path": "runtime/audio/ab/abcd.wav", "duration": 42.0,
     "segments": [[0.5, 3.2, "SPEAKER_00"], [2.9, 7.0, "SPEAKER_01"]],
     "model_version": "teacher-v1", "score": 0.83}
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.segments import Turn

ITEM_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class ReviewItem:
    """One recording to review, with the proposed segments as pre-annotations.

    Attributes:
        item_id: stable id (letters, digits, ``._-``; used as RTTM URI and file name), e.g. the
            prediction-log request id or the audio store's content hash.
        audio_path: the recording (WAV/FLAC/OGG, any rate and channels).
        duration: its length in seconds.
        segments: ``(start, end, speaker)`` in seconds of the recording; overlap allowed.
        model_version: what produced the segments (shown in Label Studio, kept in the manifest).
        score: the model's confidence for the item, 0..1 (Label Studio's prediction score).
    """

    item_id: str
    audio_path: Path
    duration: float
    segments: tuple[Turn, ...] = field(default_factory=tuple)
    model_version: str = "unknown"
    score: float = 0.0

    def __post_init__(self) -> None:
        if not ITEM_ID_PATTERN.match(self.item_id):
            raise ValueError(f"item_id {self.item_id!r}: use letters, digits and ._- (at most 200)")
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"item {self.item_id}: duration must be > 0, got {self.duration}")
        turns = tuple((float(s), float(e), str(spk)) for s, e, spk in self.segments)
        for start, end, _ in turns:
            if not (0 <= start < end):
                raise ValueError(f"item {self.item_id}: bad segment ({start}, {end})")
        object.__setattr__(self, "segments", turns)
        object.__setattr__(self, "audio_path", Path(self.audio_path))
        object.__setattr__(self, "score", float(self.score))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReviewItem:
        """From the JSONL object (``audio`` is accepted for ``audio_path``)."""
        return cls(
            item_id=str(data["item_id"]),
            audio_path=Path(data.get("audio_path") or data["audio"]),
            duration=float(data["duration"]),
            segments=tuple(tuple(s) for s in data.get("segments", [])),  # type: ignore[misc]
            model_version=str(data.get("model_version", "unknown")),
            score=float(data.get("score", 0.0)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSONL object."""
        return {
            "item_id": self.item_id,
            "audio_path": str(self.audio_path),
            "duration": self.duration,
            "segments": [list(s) for s in self.segments],
            "model_version": self.model_version,
            "score": self.score,
        }


def read_items(path: str | Path) -> list[ReviewItem]:
    """Read review items from a JSONL file (blank lines ignored; errors name the line)."""
    items = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(ReviewItem.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{lineno}: not a review item: {err}") from err
    return items


def write_items(path: str | Path, items: Iterable[ReviewItem]) -> None:
    """Write review items as JSONL."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(json.dumps(i.to_dict()) + "\n" for i in items))


@dataclass(frozen=True)
class TaskSpan:
    """The part of a recording one Label Studio task covers."""

    offset: float  # seconds into the recording
    duration: float

    @property
    def end(self) -> float:
        return self.offset + self.duration

    @property
    def offset_ms(self) -> int:
        return round(self.offset * 1000)


def split_spans(duration: float, max_s: float = 300.0) -> list[TaskSpan]:
    """Contiguous spans of at most ``max_s`` covering ``[0, duration]`` (equal lengths, none tiny)."""
    if max_s <= 0:
        raise ValueError("max_s must be > 0")
    n = max(1, math.ceil(duration / max_s - 1e-9))
    edges = [round(duration * i / n, 3) for i in range(n + 1)]
    return [TaskSpan(a, round(b - a, 3)) for a, b in itertools.pairwise(edges)]


def task_key(item_id: str, span: TaskSpan) -> str:
    """The idempotency key of a task: item id + offset in milliseconds."""
    return f"{item_id}@{span.offset_ms}"
