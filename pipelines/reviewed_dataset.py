"""The reviewed dataset as a DVC-versioned, self-contained set: audio + RTTM + UEM per reviewed item.

``flywheel label pull`` keeps the reviews in ``data/reviewed/`` (``manifest.jsonl`` is the source of
truth; the audio stays in the serving audio store, which purges it after its retention). The DVC
stage ``reviewed-dataset`` (``flywheel retrain dataset``) snapshots that into ``data/reviewed-set/``
in the layout of every evaluation set (:mod:`flywheel.testset`), so the audio outlives the store and
the set can be scored like any other (``flywheel evaluate --test-set data/reviewed-set``)::

    <item_id>.wav|.flac|.ogg   the recording, byte for byte as the reviewer heard it (whole file)
    <item_id>.rttm             reviewed speaker turns (times in the whole recording)
    <item_id>.uem              the reviewed span(s): only there are the turns a reference
    manifest.jsonl             the pull manifest's records of the items (one line per reviewed task)
    dataset.json               counts, reviewed seconds, and the items whose audio was gone

A dataset version is the DVC hash of this folder in ``dvc.lock`` plus the git commit that recorded it
(:mod:`training.retrain`). The snapshot depends only on the manifest (RTTM and UEM are rebuilt from
it, :func:`labeling.pull.item_files`), so the same reviews give the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.testset import AUDIO_SUFFIXES
from labeling.pull import MANIFEST, item_files, read_manifest

DATASET_INFO = "dataset.json"
# what makes a review new: the same task reviewed again (another annotation, or edited) counts too
REVIEW_FIELDS = ("annotation_id", "reviewed_at", "segments")


@dataclass
class SnapshotReport:
    """What :func:`snapshot` wrote."""

    out_dir: Path
    items: list[str] = field(default_factory=list)  # items in the set (audio found)
    missing_audio: list[str] = field(default_factory=list)  # reviewed, but the audio was gone
    tasks: int = 0
    reviewed_s: float = 0.0


def review_signature(record: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies one review of one task (a changed signature is a new review)."""
    return tuple(json.dumps(record.get(k), sort_keys=True) for k in REVIEW_FIELDS)


def new_items(reviewed_dir: Path, dataset_dir: Path) -> list[str]:
    """Items of the pull manifest (``reviewed_dir``) with a task not in the dataset snapshot
    (``dataset_dir``), or reviewed again since: what arrived since the last dataset version.

    Every item is new when there is no snapshot yet; none when nothing was pulled.
    """
    current = read_manifest(reviewed_dir)
    recorded = read_manifest(dataset_dir)
    changed = {
        r["item_id"]
        for key, r in current.items()
        if key not in recorded or review_signature(recorded[key]) != review_signature(r)
    }
    return sorted(changed)


def stored_audio(audio_dir: Path, sha256: str) -> Path | None:
    """The file of content hash ``sha256`` in the audio store at ``audio_dir``; ``None`` when it was
    purged (or ``sha256`` is not a content-addressed name)."""
    from flywheel.audio_store import AudioStore

    try:
        candidate = AudioStore(audio_dir).path_for(sha256)
    except ValueError:  # not a content-addressed name
        return None
    return candidate if candidate.is_file() else None


def find_audio(record: dict[str, Any], audio_dir: Path | None = None) -> Path | None:
    """The recording of a reviewed task: ``source_audio`` as pushed, else the same content-addressed
    file (``<sha256>.wav``) in ``audio_dir`` (an audio store that moved); ``None`` when gone."""
    source = Path(str(record.get("source_audio") or ""))
    if source.name and source.is_file():
        return source
    if audio_dir is not None and source.stem:
        return stored_audio(audio_dir, source.stem)
    return None


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fresh_dir(out_dir: Path) -> None:
    """Empty ``out_dir`` (a snapshot replaces the folder whole: no file of an older version stays)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)


def write_item(out_dir: Path, item_id: str, audio: Path, files: dict[str, str]) -> None:
    """One item of an evaluation-set folder: ``<item_id><audio suffix>`` copied byte for byte, and the
    RTTM/UEM texts of ``files`` (:func:`labeling.pull.item_files`) under their file names.

    Raises:
        ValueError: the audio has a suffix no evaluation set reads.
    """
    suffix = audio.suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise ValueError(f"{audio}: audio suffix {suffix!r} is not one of {AUDIO_SUFFIXES}")
    shutil.copyfile(audio, out_dir / f"{item_id}{suffix}")
    for rel, text in files.items():
        (out_dir / Path(rel).name).write_text(text)


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """``records`` as JSON lines (sorted keys, in the given order): the same records, the same bytes."""
    _write(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())


def write_info(path: Path, info: dict[str, Any]) -> None:
    """The set's ``dataset.json`` (sorted keys)."""
    _write(path, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())


def snapshot(reviewed_dir: Path, out_dir: Path, audio_dir: Path | None = None) -> SnapshotReport:
    """Write the self-contained reviewed set of ``reviewed_dir`` into ``out_dir`` (replaced whole).

    Items whose audio is gone are left out of the set but kept in ``manifest.jsonl`` (so they are not
    counted as new again) and listed in ``dataset.json``.

    Raises:
        FileNotFoundError: ``reviewed_dir`` has no manifest (nothing was pulled yet).
        ValueError: an audio file has a suffix no evaluation set reads.
    """
    if not (reviewed_dir / MANIFEST).is_file():
        raise FileNotFoundError(f"no {reviewed_dir / MANIFEST}: pull reviews first (`flywheel label pull`)")
    manifest = read_manifest(reviewed_dir)
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in manifest.values():
        by_item[record["item_id"]].append(record)
    fresh_dir(out_dir)
    report = SnapshotReport(out_dir=out_dir, tasks=len(manifest))
    for item_id, records in sorted(by_item.items()):
        records.sort(key=lambda r: r["offset"])
        audio = next((p for p in (find_audio(r, audio_dir) for r in records) if p is not None), None)
        if audio is None:
            report.missing_audio.append(item_id)
            continue
        write_item(out_dir, item_id, audio, item_files(item_id, records))
        report.items.append(item_id)
        report.reviewed_s += sum(float(r["duration"]) for r in records)
    write_records(out_dir / MANIFEST, sorted(manifest.values(), key=lambda r: (r["item_id"], r["offset"])))
    info = {
        "items": len(report.items),
        "tasks": report.tasks,
        "reviewed_s": round(report.reviewed_s, 3),
        "missing_audio": report.missing_audio,
    }
    write_info(out_dir / DATASET_INFO, info)
    return report
