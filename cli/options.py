"""Options and helpers every command module shares."""

from __future__ import annotations

from pathlib import Path

import typer

PROFILE = typer.Option("smoke", "--profile", "-p", help="Data profile from params.yaml: smoke or full.")
TRACK = typer.Option(
    True, "--track/--no-track", help="Log the run to MLflow (skipped with a message when it is down)."
)


def data_dir() -> Path:
    """The data directory (``FLYWHEEL_DATA_DIR``, default ``data/``)."""
    from flywheel.config import get_settings

    return get_settings().data_dir
