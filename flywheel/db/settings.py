"""Where the prediction log is (prefix ``FLYWHEEL_``): its database and its audio store, the one
rule every package shares.

``serving.settings.ServingSettings`` extends this class, so serving (the writer) and the readers
(A/B report, labeling, pipelines, retrain stages) resolve ``FLYWHEEL_DATABASE_URL``,
``FLYWHEEL_AUDIO_DIR`` and ``FLYWHEEL_RUNTIME_DIR`` alike.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from flywheel.config import REPO_ROOT


class DatabaseSettings(BaseSettings):
    """Environment settings of the prediction database (read fresh: not cached)."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_", env_file=".env", extra="ignore")

    runtime_dir: Path = REPO_ROOT / "runtime"
    database_url: str | None = None  # default: sqlite:///<runtime_dir>/predictions.db
    audio_dir: Path | None = None  # default: <runtime_dir>/audio

    @property
    def resolved_database_url(self) -> str:
        """The database URL, SQLite under the runtime directory unless set."""
        return self.database_url or f"sqlite:///{self.runtime_dir / 'predictions.db'}"

    @property
    def resolved_audio_dir(self) -> Path:
        """Root of the content-addressed audio store (flywheel/audio_store.py)."""
        return self.audio_dir or self.runtime_dir / "audio"
