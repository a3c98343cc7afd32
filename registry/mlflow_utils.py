"""Small helpers shared by MLflow tracking, the registry and the server command.

Nothing here imports mlflow or torch at module level: the serving path imports
:mod:`registry.models`, which uses these helpers.

* :func:`tracking_uri` and :func:`is_reachable` (a 2 s ``/health`` probe, so MLflow down never hangs);
* :func:`configure_client` (no HTTP retries, short request timeout);
* :func:`git_commit` and :func:`dataset_version` (DVC hashes from ``dvc.lock``, cheap).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from flywheel.config import REPO_ROOT, get_settings

log = logging.getLogger(__name__)


def tracking_uri(uri: str | None = None) -> str:
    """``uri`` or the configured one (``FLYWHEEL_MLFLOW_TRACKING_URI`` / ``MLFLOW_TRACKING_URI``)."""
    return uri or get_settings().mlflow_tracking_uri


def is_http(uri: str) -> bool:
    """Whether ``uri`` points at a tracking server (as opposed to a local SQLite/file store)."""
    return uri.startswith(("http://", "https://"))


def configure_client(timeout_s: float | None = None) -> None:
    """Make the MLflow HTTP client fail fast instead of retrying for minutes (user values win)."""
    timeout = timeout_s if timeout_s is not None else get_settings().mlflow_timeout_s
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    # artifact uploads need more than the health probe's timeout; still bounded
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(30, int(timeout * 10))))


def health_ok(url: str, timeout_s: float = 2.0) -> bool:
    """``GET <url>/health`` answers 200 within ``timeout_s``."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def is_reachable(uri: str | None = None, timeout_s: float | None = None) -> bool:
    """A server URI answers ``/health``; a local store (``sqlite:``, ``file:``, path) is always reachable."""
    uri = tracking_uri(uri)
    if not is_http(uri):
        return True
    return health_ok(uri, timeout_s if timeout_s is not None else get_settings().mlflow_timeout_s)


def unreachable_message(uri: str) -> str:
    """The one line printed when MLflow is down (training and evaluation go on)."""
    return f"MLflow unreachable at {uri}: nothing logged"


def local_artifact_root(uri: str) -> str | None:
    """Artifact directory for a SQLite store: ``artifacts/`` next to the database file.

    A server decides its own artifact location (``--artifacts-destination``); a ``file:`` store too.
    """
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return str((db.parent / "artifacts").resolve())
    return None


def get_or_create_experiment(client: Any, name: str, uri: str) -> str:
    """Id of experiment ``name`` (created with a local artifact root for SQLite stores)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = local_artifact_root(uri)
    return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)


def git_commit(repo: Path = REPO_ROOT) -> str:
    """``HEAD`` commit, with ``+dirty`` when tracked files changed; ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _dvc_outs(lock_file: Path) -> dict[str, str]:
    """``{out path: md5}`` of every stage output recorded in ``dvc.lock``."""
    if not lock_file.exists():
        return {}
    lock = yaml.safe_load(lock_file.read_text()) or {}
    outs: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if "md5" in out:
                outs[out["path"].rstrip("/")] = str(out["md5"]).removesuffix(".dir")
    return outs


def _listing_hash(path: Path, max_files: int = 50_000) -> str:
    """Hash of the relative names and sizes under ``path`` (for data DVC does not track)."""
    digest = hashlib.sha1()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files[:max_files]:
        digest.update(f"{p.relative_to(path) if path.is_dir() else p.name}:{p.stat().st_size}\n".encode())
    return digest.hexdigest()[:12]


def dataset_version(paths: list[Path | str], repo: Path = REPO_ROOT) -> str:
    """The data a run used, as ``<dvc out>@<md5[:12]>`` joined by commas (sorted, deduplicated).

    Each path is matched to the ``dvc.lock`` output that contains it (``data/conversations/full/test``
    -> ``data/conversations/full``); a path DVC does not track (a temporary smoke set) is named
    ``untracked:<name>@<hash of file names and sizes>``. Missing paths are skipped.
    """
    outs = _dvc_outs(repo / "dvc.lock")
    found: set[str] = set()
    for raw in paths:
        path = Path(raw).resolve()
        try:
            rel = path.relative_to(repo.resolve()).as_posix()
        except ValueError:
            rel = None
        match = None
        if rel is not None:
            for out, md5 in outs.items():
                if rel == out or rel.startswith(out + "/"):
                    match = f"{out}@{md5[:12]}"
                    break
        if match is None and path.exists():
            match = f"untracked:{path.name}@{_listing_hash(path)}"
        if match:
            found.add(match)
    return ",".join(sorted(found)) or "unknown"


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}} -> {"a.b": "1"}`` (MLflow parameters are flat strings, 6000 chars max)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (models are a few MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
