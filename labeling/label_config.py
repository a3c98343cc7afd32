"""The speaker-segmentation labeling config and the conversion between segments and regions.

Label Studio regions are ``{"from_name": "speaker", "to_name": "audio", "type": "labels",
"value": {"start", "end", "channel": 0, "labels": ["Speaker k"]}}`` with times relative to the task's
audio clip; segments are ``(start, end, speaker)`` in seconds of the whole recording.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import quoteattr

from flywheel.segments import Turn

FROM_NAME = "speaker"
TO_NAME = "audio"
LABEL_PREFIX = "Speaker "
COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
          "#fabed4", "#469990", "#dcbeff", "#9a6324")  # fmt: skip


def speaker_label(index: int) -> str:
    """``Speaker 1``, ``Speaker 2``, ... (1-based)."""
    return f"{LABEL_PREFIX}{index}"


def _color(index: int) -> str:
    return COLORS[(index - 1) % len(COLORS)]


def label_config(num_speakers: int) -> str:
    """Audio + one ``Labels`` control with ``Speaker 1..N`` (hotkeys 1..9), regions may overlap."""
    labels = "\n".join(
        f"    <Label value={quoteattr(speaker_label(i))} background={quoteattr(_color(i))}/>"
        for i in range(1, num_speakers + 1)
    )
    return (
        "<View>\n"
        '  <Header value="$title"/>\n'
        f'  <Labels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}\n  </Labels>\n'
        f'  <Audio name="{TO_NAME}" value="$audio" hotkey="space"/>\n'
        "</View>\n"
    )


def speakers_in_config(config: str) -> int:
    """The ``N`` of a config built by :func:`label_config` (0 when it has no ``Speaker k`` label)."""
    found = [int(n) for n in re.findall(r'value="' + LABEL_PREFIX + r'(\d+)"', config)]
    return max(found, default=0)


def speaker_mapping(segments: Iterable[Turn]) -> dict[str, str]:
    """Model speaker name -> ``Speaker k``, numbered by first appearance in the recording."""
    mapping: dict[str, str] = {}
    for _, _, speaker in sorted(segments, key=lambda t: (t[0], t[1])):
        mapping.setdefault(speaker, speaker_label(len(mapping) + 1))
    return mapping


def regions(segments: Iterable[Turn], offset: float, duration: float, mapping: dict[str, str]) -> list[dict]:
    """The segments inside ``[offset, offset + duration]`` as regions of a clip starting at ``offset``."""
    out = []
    for start, end, speaker in sorted(segments, key=lambda t: (t[0], t[1])):
        s, e = max(start, offset) - offset, min(end, offset + duration) - offset
        if e - s < 1e-3:
            continue
        out.append({
            "id": f"p{len(out)}",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "labels",
            "origin": "prediction",
            "value": {"start": round(s, 3), "end": round(e, 3), "channel": 0, "labels": [mapping[speaker]]},
        })  # fmt: skip
    return out


def segments_from_result(result: Iterable[dict[str, Any]], offset: float, duration: float) -> list[Turn]:
    """An annotation's regions back to ``(start, end, speaker)`` in the recording (offset applied).

    Speakers become RTTM-safe names (``Speaker 2`` -> ``Speaker_2``); a region with several labels
    gives one segment per label; times are clipped to the task's span.
    """
    turns: list[Turn] = []
    for region in result:
        if region.get("type") != "labels" or region.get("from_name") != FROM_NAME:
            continue
        value = region.get("value", {})
        start = min(max(float(value["start"]), 0.0), duration)
        end = min(max(float(value["end"]), 0.0), duration)
        if end - start < 1e-3:
            continue
        for label in value.get("labels", []):
            turns.append((round(offset + start, 3), round(offset + end, 3), re.sub(r"\s+", "_", label)))
    return sorted(turns)
