"""Settings of the Label Studio review queue, from the environment (prefix ``FLYWHEEL_``, or ``.env``).

Secrets (admin password, API token) are never in the repository: they come from
``FLYWHEEL_LABEL_STUDIO_PASSWORD`` / ``FLYWHEEL_LABEL_STUDIO_TOKEN``, or, when unset, from local
defaults generated once and kept in ``runtime/label-studio/credentials.json`` (mode 0600).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from flywheel.config import REPO_ROOT

DEFAULT_USERNAME = "admin@flywheel.local"


class LabelingSettings(BaseSettings):
    """Where Label Studio runs, who logs in, and where reviewed data goes."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_", env_file=".env", extra="ignore")

    label_studio_host: str = "127.0.0.1"  # loopback only
    label_studio_port: int = 8080
    label_studio_url: str | None = None  # another server (compose, remote); default http://host:port
    label_studio_username: str = DEFAULT_USERNAME  # an e-mail address: Label Studio logs in by e-mail
    label_studio_password: str | None = None  # default: generated into <dir>/credentials.json
    label_studio_token: str | None = None  # API token (legacy token, 40 hex); default: generated
    label_studio_dir: Path = REPO_ROOT / "runtime" / "label-studio"  # data, media, pid, log
    label_studio_venv: Path = REPO_ROOT / ".venv-label-studio"
    label_studio_media_dir: Path | None = None  # where push writes audio clips; default <dir>/media
    # The same folder as the *server* sees it (LOCAL_FILES_DOCUMENT_ROOT); differs only in a container.
    label_studio_server_media_dir: str | None = None
    label_studio_project: str = "Speaker review"
    label_studio_speakers: int = 6  # labels Speaker 1..N in the config (grown when an item needs more)
    label_studio_task_max_s: float = 300.0  # longer recordings are split into tasks of at most this
    label_studio_timeout_s: float = 30.0  # per HTTP request
    reviewed_dir: Path = REPO_ROOT / "data" / "reviewed"  # RTTM + UEM + manifest.jsonl from `label pull`

    @property
    def url(self) -> str:
        """Base URL of the Label Studio server."""
        return (self.label_studio_url or f"http://{self.label_studio_host}:{self.label_studio_port}").rstrip(
            "/"
        )

    @property
    def media_dir(self) -> Path:
        """Local folder holding the audio clips Label Studio serves (its local-files document root)."""
        return self.label_studio_media_dir or self.label_studio_dir / "media"

    @property
    def server_media_dir(self) -> str:
        """The media folder as the server sees it."""
        return self.label_studio_server_media_dir or str(self.media_dir.resolve())


@dataclass(frozen=True)
class Credentials:
    """Admin login and API token of the local Label Studio."""

    username: str
    password: str
    token: str


def credentials(settings: LabelingSettings | None = None) -> Credentials:
    """Credentials from the environment, else the generated local defaults (created on first call).

    The token is only *installed* on the server's first start (``LABEL_STUDIO_USER_TOKEN``); changing it
    later in the environment makes the API answer 401 until the server's data dir is recreated.
    """
    settings = settings or LabelingSettings()
    password, token = settings.label_studio_password, settings.label_studio_token
    if password and token:
        return Credentials(settings.label_studio_username, password, token)
    path = settings.label_studio_dir / "credentials.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    else:
        stored = {"password": secrets.token_urlsafe(18), "token": secrets.token_hex(20)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh)
        os.replace(tmp, path)
    return Credentials(
        settings.label_studio_username, password or stored["password"], token or stored["token"]
    )
