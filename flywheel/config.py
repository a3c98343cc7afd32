"""Configuration in one place.

* ``params.yaml`` (DVC-tracked): every parameter a stage uses (data, model, training, gates).
* Environment variables (pydantic-settings, prefix ``FLYWHEEL_``): paths, service URLs, secrets.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Deployment settings read from the environment (or a ``.env`` file)."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_", env_file=".env", extra="ignore")

    params_file: Path = REPO_ROOT / "params.yaml"
    data_dir: Path = REPO_ROOT / "data"
    models_dir: Path = REPO_ROOT / "models"
    shared_data_dir: Path = REPO_ROOT.parent / "shared" / "data"

    # MLflow (registry/tracking.py, registry/models.py, `flywheel mlflow`)
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000",
        validation_alias=AliasChoices("FLYWHEEL_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )
    mlflow_timeout_s: float = 2.0  # /health probe and per-request HTTP timeout: MLflow down never hangs
    mlflow_experiment: str = "diarization"
    mlflow_host: str = "127.0.0.1"
    mlflow_port: int = 5000
    mlflow_dir: Path = REPO_ROOT / "runtime" / "mlflow"  # SQLite DB, artifacts, pid file, log
    model_cache_dir: Path = REPO_ROOT / "runtime" / "model-cache"  # champion ONNX files downloaded
    reports_dir: Path = REPO_ROOT / "reports"  # gate evaluations: <reports_dir>/gate/<model>/v<version>


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings (cached; call ``get_settings.cache_clear()`` after changing the env)."""
    return Settings()


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (or ``path``) as a plain dict."""
    path = Path(path) if path else get_settings().params_file
    with open(path) as fh:
        return yaml.safe_load(fh)


def resolve_recipe(recipes: dict[str, Any], name: str, kind: str = "recipe") -> dict[str, Any]:
    """Recipe ``name`` of ``recipes`` with what it ``extends`` filled in.

    A recipe states only what differs from the recipe it continues (``extends: <other>``, chains
    allowed); keys it sets replace the parent's (dicts and lists whole). The result has no ``extends``.

    Raises:
        KeyError: ``name`` (or a recipe it extends) is not in ``recipes``; the message lists them.
        ValueError: the ``extends`` chain loops.
    """
    chain: list[str] = []
    current: str | None = name
    while current is not None:
        if current not in recipes:
            where = f" (extended by {chain[-1]!r})" if chain else ""
            raise KeyError(f"unknown {kind} {current!r}{where}; choose one of {sorted(recipes)}")
        if current in chain:
            raise ValueError(f"{kind} {name!r}: `extends` loops through {' -> '.join([*chain, current])}")
        chain.append(current)
        current = recipes[current].get("extends")
    resolved: dict[str, Any] = {}
    for step in reversed(chain):
        resolved.update({k: v for k, v in recipes[step].items() if k != "extends"})
    return resolved


def profile_params(profile: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parameters of one data profile (``smoke`` or ``full``), with a clear error for unknown names."""
    params = params or load_params()
    profiles = params["profiles"]
    if profile not in profiles:
        raise KeyError(f"unknown profile {profile!r}; choose one of {sorted(profiles)}")
    return profiles[profile]
