"""The ``pseudo_labels`` table (SQLAlchemy Core) next to the prediction log, and its queries.

One row per logged request (``predictions.request_id``) the teacher has been run over. The table
lives in the prediction database (migration ``flywheel/db/migrations/versions/0002_pseudo_labels.py``)
so "logged audio without a pseudo-label" is one outer join. Status values: ``ok``, ``error`` (the
teacher or the audio decoder failed; retried with ``--retry-errors``) and ``missing_audio`` (the
audio was purged from the store or never stored; retried with ``--retry-errors`` too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)

from flywheel.db.models import Prediction

metadata = MetaData()

pseudo_labels = Table(
    "pseudo_labels",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("audio_sha256", String(64), index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("teacher_version", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("rttm_path", Text),
    Column("segments", JSON),  # [[start, end, speaker], ...] of the teacher
    Column("num_speakers", Integer),
    Column("duration_s", Float),
    Column("confidence", Float),
    Column("segmentation_confidence", Float),
    Column("clustering_confidence", Float),
    Column("disagreement", Float),  # DER of the served segments against the pseudo-label
    Column("reference_speech_s", Float),  # its components (seconds), so corpus DERs can be summed
    Column("missed_s", Float),
    Column("false_alarm_s", Float),
    Column("confusion_s", Float),
    Column("teacher_s", Float),  # wall time of the teacher on this audio
    Column("error", Text),
)


@dataclass(frozen=True)
class LogItem:
    """A logged, successful request whose audio the teacher should label."""

    request_id: str
    audio_sha256: str
    created_at: datetime
    arm: str | None
    model_version: str | None
    duration_s: float | None
    segments: tuple[tuple[float, float, str], ...]


def served_turns(segments: Any) -> tuple[tuple[float, float, str], ...]:
    """The log's ``[{start, end, speaker}, ...]`` (or ``[[s, e, spk], ...]``) as turns."""
    turns = []
    for seg in segments or []:
        if isinstance(seg, dict):
            turns.append((float(seg["start"]), float(seg["end"]), str(seg["speaker"])))
        else:
            start, end, speaker = seg
            turns.append((float(start), float(end), str(speaker)))
    return tuple(turns)


def pending_items(engine: Engine, since: datetime | None = None, limit: int | None = None) -> list[LogItem]:
    """Successful logged requests with stored audio and no pseudo-label row, oldest first."""
    p = Prediction.__table__
    query = (
        select(
            p.c.request_id,
            p.c.audio_sha256,
            p.c.created_at,
            p.c.arm,
            p.c.model_version,
            p.c.audio_duration_s,
            p.c.segments,
        )
        .select_from(p.outerjoin(pseudo_labels, pseudo_labels.c.request_id == p.c.request_id))
        .where(pseudo_labels.c.request_id.is_(None))
        .where(p.c.status == "ok", p.c.audio_sha256.is_not(None), p.c.segments.is_not(None))
        .order_by(p.c.created_at, p.c.request_id)
    )
    if since is not None:
        query = query.where(p.c.created_at >= since)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        LogItem(
            r.request_id,
            r.audio_sha256,
            r.created_at,
            r.arm,
            r.model_version,
            r.audio_duration_s,
            served_turns(r.segments),
        )
        for r in rows
    ]


def labelled_by_sha(engine: Engine, shas: list[str], teacher_version: str) -> dict[str, dict[str, Any]]:
    """An ``ok`` row per audio hash already labelled by this teacher version (reused, not re-run)."""
    out: dict[str, dict[str, Any]] = {}
    if not shas:
        return out
    t = pseudo_labels
    with engine.connect() as conn:
        for i in range(0, len(shas), 500):
            rows = conn.execute(
                select(t).where(
                    t.c.audio_sha256.in_(shas[i : i + 500]),
                    t.c.status == "ok",
                    t.c.teacher_version == teacher_version,
                )
            ).mappings()
            for row in rows:
                out.setdefault(row["audio_sha256"], dict(row))
    return out


def insert_rows(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert result rows, skipping request ids that already have one (a resumed or concurrent run)."""
    if not rows:
        return 0
    dialect = engine.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:  # pragma: no cover - the project supports SQLite and PostgreSQL
        dialect_insert = None
    stmt = (
        dialect_insert(pseudo_labels).on_conflict_do_nothing(index_elements=["request_id"])
        if dialect_insert is not None
        else insert(pseudo_labels)
    )
    with engine.begin() as conn:
        result = conn.execute(stmt, rows)
    return int(result.rowcount or 0)


def delete_failed(engine: Engine) -> int:
    """Remove ``error`` and ``missing_audio`` rows so the next run tries them again."""
    with engine.begin() as conn:
        result = conn.execute(delete(pseudo_labels).where(pseudo_labels.c.status != "ok"))
    return int(result.rowcount or 0)


def labelled_rows(engine: Engine, since: datetime | None = None) -> list[dict[str, Any]]:
    """``ok`` pseudo-label rows joined with their prediction (arm, model version, audio, served time)."""
    p = Prediction.__table__
    t = pseudo_labels
    query = (
        select(t, p.c.arm, p.c.model_version, p.c.created_at.label("served_at"))
        .select_from(t.join(p, p.c.request_id == t.c.request_id))
        .where(t.c.status == "ok")
        .order_by(t.c.request_id)
    )
    if since is not None:
        query = query.where(p.c.created_at >= since)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
