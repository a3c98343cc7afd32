"""The pseudo-labelled dataset as a DVC-versioned, self-contained set: logged audio + teacher RTTM + UEM.

``flywheel pseudo-label`` runs the teacher over logged requests: one ``data/pseudo-labels/<request_id>
.rttm`` per request and a ``pseudo_labels`` row (status, confidence, disagreement, the teacher's turns)
in the prediction database; the audio stays in the serving audio store, which purges it after its
retention. The DVC stage ``pseudo-dataset`` (``flywheel retrain pseudo-dataset``) snapshots the ``ok``
rows whose confidence is at least ``retrain.pseudo_min_confidence`` into ``data/pseudo-set/``, in the
layout of every evaluation set and of the reviewed set (:mod:`pipelines.reviewed_dataset`, whose
helpers write it)::

    <request_id>.wav   the logged recording, byte for byte as the store kept it (whole file)
    <request_id>.rttm  the teacher's turns (pseudo-labels, not a human's)
    <request_id>.uem   the whole file (the teacher labelled all of it)
    manifest.jsonl     one record per item: request id, confidence(s), disagreement, teacher version,
                       the served arm and model version
    dataset.json       counts, seconds, the threshold, rows below it, and the items whose audio was gone

Rows with status ``error`` or ``missing_audio`` never enter the set. The snapshot depends only on the
rows (RTTM and UEM are rebuilt from the row's turns, :func:`labeling.pull.item_files`) and the audio,
so the same rows give the same bytes. A version is the DVC hash of the folder in ``dvc.lock`` plus
the git commit that recorded it, as for the reviewed set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from labeling.pull import MANIFEST, item_files
from pipelines.reviewed_dataset import (
    DATASET_INFO,
    fresh_dir,
    stored_audio,
    write_info,
    write_item,
    write_records,
)

# what a pseudo-set item records of its row (and of the logged request it labels)
ROW_FIELDS = (
    "request_id",
    "audio_sha256",
    "confidence",
    "segmentation_confidence",
    "clustering_confidence",
    "disagreement",
    "num_speakers",
    "duration_s",
    "teacher_version",
    "arm",
    "model_version",
)


@dataclass
class PseudoSnapshotReport:
    """What :func:`snapshot_pseudo` wrote."""

    out_dir: Path
    items: list[str] = field(default_factory=list)  # request ids in the set (audio found)
    missing_audio: list[str] = field(default_factory=list)  # confident enough, but the audio was gone
    below_threshold: int = 0  # ok rows left out for their confidence
    seconds: float = 0.0


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (None if value is None else str(value))


def item_record(row: dict[str, Any]) -> dict[str, Any]:
    """The manifest record of one ``ok`` pseudo-label row (:func:`labeling.pseudo_db.labelled_rows`)."""
    record = {k: row.get(k) for k in ROW_FIELDS}
    record["item_id"] = row["request_id"]
    record["labelled_at"] = _iso(row.get("created_at"))
    record["served_at"] = _iso(row.get("served_at"))
    record["segments"] = [[float(s), float(e), str(k)] for s, e, k in row.get("segments") or []]
    return record


def selected(rows: list[dict[str, Any]], min_confidence: float) -> list[dict[str, Any]]:
    """The ``ok`` rows whose confidence is at least ``min_confidence`` (no confidence: left out)."""
    return [
        r
        for r in rows
        if r.get("status", "ok") == "ok"
        and r.get("confidence") is not None
        and float(r["confidence"]) >= min_confidence
    ]


def _duration(row: dict[str, Any], audio: Path) -> float:
    if row.get("duration_s") is not None:
        return float(row["duration_s"])
    import soundfile as sf

    return float(sf.info(str(audio)).duration)


def snapshot_rows(
    rows: list[dict[str, Any]], out_dir: Path, audio_dir: Path, min_confidence: float
) -> PseudoSnapshotReport:
    """Write the pseudo-labelled set of ``rows`` (pseudo-label rows joined with their prediction) into
    ``out_dir`` (replaced whole); rows in any order.

    Raises:
        ValueError: an audio file has a suffix no evaluation set reads.
    """
    chosen = sorted(selected(rows, min_confidence), key=lambda r: r["request_id"])
    ok = sum(1 for r in rows if r.get("status", "ok") == "ok")
    fresh_dir(out_dir)
    report = PseudoSnapshotReport(out_dir=out_dir, below_threshold=ok - len(chosen))
    records = []
    for row in chosen:
        item_id = row["request_id"]
        audio = stored_audio(audio_dir, str(row.get("audio_sha256") or ""))
        if audio is None:
            report.missing_audio.append(item_id)
            continue
        record = item_record(row)
        duration = _duration(row, audio)
        span = {"offset": 0.0, "duration": duration, "segments": record["segments"]}
        write_item(out_dir, item_id, audio, item_files(item_id, [span]))
        records.append(record)
        report.items.append(item_id)
        report.seconds += duration
    write_records(out_dir / MANIFEST, records)
    info = {
        "items": len(report.items),
        "seconds": round(report.seconds, 3),
        "min_confidence": min_confidence,
        "below_threshold": report.below_threshold,
        "missing_audio": report.missing_audio,
        "teacher_versions": sorted({str(r["teacher_version"]) for r in records if r["teacher_version"]}),
        "labels": "teacher pseudo-labels (flywheel pseudo-label), not reviewed",
    }
    write_info(out_dir / DATASET_INFO, info)
    return report


def snapshot_pseudo(
    database_url: str, out_dir: Path, audio_dir: Path, min_confidence: float
) -> PseudoSnapshotReport:
    """Snapshot the ``ok`` pseudo-labels of the prediction database at ``database_url`` with
    confidence at least ``min_confidence`` and their audio (store at ``audio_dir``) into ``out_dir``.

    Raises:
        FileNotFoundError: the database has no ``pseudo_labels`` table (``flywheel pseudo-label``
            never ran against it).
        ValueError: an audio file has a suffix no evaluation set reads.
    """
    from sqlalchemy import inspect

    from flywheel.db.engine import make_engine
    from labeling.pseudo_db import labelled_rows

    engine = make_engine(database_url)
    try:
        if not inspect(engine).has_table("pseudo_labels"):
            raise FileNotFoundError(
                f"{database_url}: no pseudo_labels table: run the teacher first (`flywheel pseudo-label`)"
            )
        rows = labelled_rows(engine)
    finally:
        engine.dispose()
    return snapshot_rows(rows, out_dir, audio_dir, min_confidence)
