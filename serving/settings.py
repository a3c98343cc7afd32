"""Serving settings from the environment (prefix ``FLYWHEEL_``): paths, limits, keys, database URL.

Structure (which arms, replicas, weights) lives in the Serve config file; everything here is either a
secret or a per-machine path, so it comes from the environment of the Ray processes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from flywheel.db.settings import DatabaseSettings


class ServingSettings(DatabaseSettings):
    """Environment settings of the serving path (``runtime_dir``, ``database_url``, ``audio_dir``
    from the core)."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_", env_file=".env", extra="ignore")

    spool_dir: Path | None = None  # default: <runtime_dir>/spool
    audio_retention_days: float = 30.0
    log_predictions: bool = True
    store_audio: bool = True
    api_keys: str = ""  # comma-separated; empty: no authentication
    admin_key: str | None = None  # enables ?arm= overrides
    max_upload_bytes: int = 64 * 1024 * 1024
    max_duration_s: float = 1800.0
    min_duration_s: float = 0.5
    upload_timeout_s: float = 60.0
    champion_poll_s: float = 30.0
    log_dir: Path | None = None  # default: <runtime_dir>/logs (JSON application log, serving.jsonl)
    log_level: str = "INFO"
    mlflow_tracking_uri: str | None = None

    @property
    def resolved_spool_dir(self) -> Path:
        """Where prediction records wait while the database is unreachable."""
        return self.spool_dir or self.runtime_dir / "spool"

    @property
    def resolved_log_dir(self) -> Path:
        """Where the JSON application log ``serving.jsonl`` is written."""
        return self.log_dir or self.runtime_dir / "logs"

    @property
    def api_key_set(self) -> frozenset[str]:
        """The accepted API keys (empty: authentication off)."""
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())


def serving_settings() -> ServingSettings:
    """Fresh settings from the current environment (not cached: tests and replicas change it)."""
    return ServingSettings()
