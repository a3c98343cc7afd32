"""SQLAlchemy 2 models of the prediction log (one row per request, successful or not)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the prediction database."""


class Prediction(Base):
    """One diarization request: who asked, which arm and model answered, what came out."""

    __tablename__ = "predictions"

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    client_id: Mapped[str | None] = mapped_column(String(200), index=True)
    arm: Mapped[str | None] = mapped_column(String(64), index=True)
    model_name: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(128))
    latency_ms: Mapped[float] = mapped_column(Float)
    audio_duration_s: Mapped[float | None] = mapped_column(Float)
    audio_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    segments: Mapped[list | None] = mapped_column(JSON)
    num_speakers: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)  # ok | error
    http_status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
