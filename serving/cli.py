"""CLI commands of the serving side, mounted by ``cli.main``: ``ab``, ``db``, ``serve``, ``audio``.

Imports are lazy so ``flywheel --help`` stays instant.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flywheel.processes import pid_alive

if TYPE_CHECKING:
    from serving.settings import ServingSettings

ab_app = typer.Typer(help="A/B split of the running service.", no_args_is_help=True)
db_app = typer.Typer(help="Prediction database (alembic migrations).", no_args_is_help=True)
serve_app = typer.Typer(help="Run the Ray Serve application (loopback).", no_args_is_help=True)
audio_app = typer.Typer(help="Content-addressed audio store of served requests.", no_args_is_help=True)

APP = typer.Option("flywheel", "--app", help="Serve application name.")


def _settings() -> ServingSettings:
    """Serving settings from the environment (imported lazily)."""
    from serving.settings import ServingSettings

    return ServingSettings()


@ab_app.command("set")
def ab_set(
    weights: list[str] = typer.Argument(..., help="ARM=WEIGHT pairs, e.g. fast-cnn=0.9 distilhubert=0.1"),
    app: str = APP,
    address: str = typer.Option(None, "--address", help="Ray cluster (default: RAY_ADDRESS or auto)."),
) -> None:
    """Change the A/B weights at runtime (replicas are reconfigured, not restarted)."""
    from serving import control
    from serving.routing import WeightError, parse_weights

    try:
        parsed = parse_weights(weights)
    except WeightError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2) from None
    import ray

    ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto", logging_level="ERROR")
    control.set_weights(parsed, app=app)
    typer.echo(f"weights of {app}: {json.dumps(parsed)}")


@ab_app.command("show")
def ab_show(url: str = typer.Option("http://127.0.0.1:8000", "--url", help="Service base URL.")) -> None:
    """Print the arms, their model versions and weights (GET /v1/models)."""
    import httpx

    typer.echo(json.dumps(httpx.get(f"{url}/v1/models", timeout=10).json(), indent=2))


@db_app.command("upgrade")
def db_upgrade(
    url: str = typer.Option(None, "--url", help="Database URL (default: FLYWHEEL_DATABASE_URL or SQLite)."),
    revision: str = typer.Option("head", "--revision"),
) -> None:
    """Apply the alembic migrations of the prediction database."""
    from flywheel.db.migrate import current, upgrade

    url = url or _settings().resolved_database_url
    upgrade(url, revision)
    typer.echo(f"{url.split('@')[-1]}: at revision {current(url)}")


@db_app.command("count")
def db_count(url: str = typer.Option(None, "--url", help="Database URL.")) -> None:
    """Rows in the prediction log, per arm and status."""
    from sqlalchemy import func, select

    from flywheel.db import Prediction, make_engine

    engine = make_engine(url or _settings().resolved_database_url)
    with engine.connect() as conn:
        columns = (Prediction.arm, Prediction.status)
        stmt = select(*columns, func.count()).group_by(*columns)
        for arm, status, n in conn.execute(stmt):
            typer.echo(f"{arm or '-':14s} {status:6s} {n}")


@audio_app.command("purge")
def audio_purge(
    days: float = typer.Option(
        None, "--days", help="Older than this (default: FLYWHEEL_AUDIO_RETENTION_DAYS)."
    ),
) -> None:
    """Delete stored request audio past its retention."""
    from flywheel.audio_store import AudioStore

    s = _settings()
    removed = AudioStore(s.resolved_audio_dir, s.audio_retention_days).purge(days)
    typer.echo(f"removed {removed} files from {s.resolved_audio_dir}")


def _pid_file() -> Path:
    return _settings().runtime_dir / "serve.pid"


@serve_app.command("up")
def serve_up(
    config: Path = typer.Option(None, "--config", help="Serve config (default: serving/serve_config.yaml)."),
    timeout: float = typer.Option(600.0, help="Seconds to wait until the app is ready."),
) -> None:
    """Start Ray Serve in the background (pid in runtime/serve.pid, log in runtime/serve.log)."""
    from serving.control import CONFIG_PATH

    pid_file = _pid_file()
    if pid_file.exists() and pid_alive(int(pid_file.read_text())):
        typer.echo(f"already running (pid {pid_file.read_text().strip()})")
        return
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_path = pid_file.with_name("serve.log")
    cmd = [sys.executable, "-m", "serving.runner", "--config", str(config or CONFIG_PATH)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if "\nready" in text or text.startswith("ready"):
            typer.echo("".join(line + "\n" for line in text.splitlines() if "http://" in line), nl=False)
            return
        if proc.poll() is not None:
            typer.secho(f"serve runner exited ({proc.returncode}); see {log_path}", fg="red", err=True)
            raise typer.Exit(1)
        time.sleep(1)
    typer.secho(f"not ready after {timeout:g} s; see {log_path}", fg="red", err=True)
    raise typer.Exit(1)


@serve_app.command("down")
def serve_down(timeout: float = typer.Option(90.0, help="Seconds to wait for a clean stop.")) -> None:
    """Stop what `serve up` started (SIGTERM to the runner, which stops Ray)."""
    pid_file = _pid_file()
    if not pid_file.exists():
        typer.echo("not running")
        return
    pid = int(pid_file.read_text())
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    typer.echo(f"stopped (pid {pid})")
