"""Which model file an arm serves: its champion, resolved in a fixed order.

1. an explicit ``model_path`` from the Serve config (pins the arm to a file; used by tests);
2. the environment: ``FLYWHEEL_MODEL_PATH_<ARM>`` (``fast-cnn`` -> ``FLYWHEEL_MODEL_PATH_FAST_CNN``);
3. the model registry: ``registry.models.resolve_champion(model_name)`` (MLflow ``@champion``
   when the gate's signed record on it matches the file, else the last good gated version; the
   release ONNX when MLflow is down or nothing gated is there). Such a champion carries the
   SHA-256 the gate evaluated and the pipeline settings it was evaluated with: the arm checks the
   file it loads against that digest and runs the model with those settings;
4. the release ONNX kept in the repository, ``models/release/<model_name>.onnx``.

A file that does not exist means the arm is unavailable (it gets no traffic).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.config import REPO_ROOT
from flywheel.systems.onnx_system import release_model_path

log = logging.getLogger(__name__)
_HASHES: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class Champion:
    """A resolved model: what an arm loads and reports."""

    model_name: str
    version: str
    path: Path
    source: str  # config | env | mlflow | release
    der: float | None = None
    sha256: str | None = None  # the gate's digest of the file (mlflow): the loaded file must match it
    pipeline: dict[str, Any] | None = None  # the pipeline settings the gate evaluated it with

    @property
    def key(self) -> tuple[str, str, int, int]:
        """Changes whenever the served model would change (version, file, or file content)."""
        st = self.path.stat()
        return (self.version, str(self.path), st.st_mtime_ns, st.st_size)


def env_var(arm: str) -> str:
    """The environment variable that overrides an arm's model file."""
    return "FLYWHEEL_MODEL_PATH_" + arm.upper().replace("-", "_")


def file_version(path: Path) -> str:
    """A content version for a plain file: ``sha256:<first 12 hex digits>`` (cached by mtime/size)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = f"sha256:{h.hexdigest()[:12]}"
    return _HASHES[key]


def _file_champion(model_name: str, path: str | Path, source: str) -> Champion | None:
    p = Path(path)
    if not p.is_absolute():
        p = REPO_ROOT / p
    if not p.is_file():
        return None
    return Champion(model_name, file_version(p), p, source)


def _registry_champion(model_name: str, tracking_uri: str | None) -> Champion | None:
    try:
        from registry.models import resolve_champion
    except ImportError:  # a serving image without the registry package
        return None
    try:
        ref = resolve_champion(model_name, tracking_uri=tracking_uri)
    except Exception as err:  # registry down and no release model, or not registered yet
        log.info("no registry champion for %s: %s", model_name, err)
        return None
    path = Path(ref.path)
    if not path.is_file():
        return None
    return Champion(
        model_name,
        str(ref.version),
        path,
        str(ref.source),
        ref.der,
        sha256=ref.sha256,
        pipeline=ref.pipeline,
    )


def resolve(
    arm: str,
    model_name: str | None = None,
    model_path: str | Path | None = None,
    tracking_uri: str | None = None,
) -> Champion | None:
    """The champion of ``arm`` (model ``model_name``, default the arm name), or None if unavailable."""
    name = model_name or arm
    if model_path:
        return _file_champion(name, model_path, "config")
    if os.environ.get(env_var(arm)):
        return _file_champion(name, os.environ[env_var(arm)], "env")
    return _registry_champion(name, tracking_uri) or _file_champion(name, release_model_path(name), "release")


def release_champion(model_name: str) -> Champion | None:
    """The release model kept in the repository (the shipped default), or None when absent."""
    return _file_champion(model_name, release_model_path(model_name), "release")
