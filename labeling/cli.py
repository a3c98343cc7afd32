"""``flywheel label ...``: the Label Studio review queue (mounted by ``flywheel.cli``).

Imports are lazy so ``flywheel --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import typer

label_app = typer.Typer(
    help="Label Studio review queue: serve, push review items as tasks, pull reviewed RTTM/UEM.",
    no_args_is_help=True,
)


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg="red", err=True)
    return typer.Exit(1)


@label_app.command("serve")
def serve(
    stop: bool = typer.Option(False, "--stop", help="Stop the background server of the pid file."),
    port: int = typer.Option(None, "--port", help="Port (default: 8080, FLYWHEEL_LABEL_STUDIO_PORT)."),
    root: Path = typer.Option(
        None, "--root", help="Data, media, pid and log folder (default: runtime/label-studio)."
    ),
    timeout: float = typer.Option(
        180.0, "--timeout", help="Seconds to wait for /health (first start ~30 s)."
    ),
) -> None:
    """Start Label Studio on loopback in the background (idempotent) and wait until it answers."""
    from labeling.server import ServerConfig, ServerError, start_server, stop_server

    cfg = ServerConfig.from_settings(port=port, root=root)
    if root is not None:
        cfg.media_dir = root / "media"
    if stop:
        stopped = stop_server(cfg)
        typer.echo(f"stopped Label Studio of {cfg.pid_file}" if stopped else "no Label Studio running")
        return
    try:
        pid = start_server(cfg, timeout_s=timeout)
    except ServerError as err:
        raise _fail(str(err)) from None
    typer.echo(f"Label Studio at {cfg.url} (pid {pid}, log {cfg.log_file})")
    typer.echo(f"log in as {cfg.creds.username}; password and API token in {cfg.root / 'credentials.json'}")
    typer.echo("stop it with `flywheel label serve --stop` (or `make label-studio-stop`)")


@label_app.command("push")
def push(
    items: Path = typer.Option(..., "--items", exists=True, dir_okay=False, help="Review items (JSONL)."),
    budget: int = typer.Option(None, "--budget", min=1, help="At most this many items get new tasks."),
) -> None:
    """Import review items as Label Studio tasks with their segments as pre-annotations (idempotent)."""
    from labeling.client import LabelStudioClient, LabelStudioError
    from labeling.push import push_file
    from labeling.settings import LabelingSettings, credentials

    settings = LabelingSettings()
    try:
        with LabelStudioClient(
            settings.url, credentials(settings).token, settings.label_studio_timeout_s
        ) as c:
            report = push_file(items, c, settings, budget=budget)
    except (LabelStudioError, ValueError, OSError) as err:
        raise _fail(f"push failed: {err}") from None
    typer.echo(
        f"project {report.project_id}: {len(report.created)} new tasks from {report.items} items, "
        f"{len(report.skipped)} already there ({settings.url}/projects/{report.project_id}/data)"
    )


@label_app.command("pull")
def pull(
    out_dir: Path = typer.Option(
        None, "--out-dir", help="Reviewed dataset folder (default: data/reviewed, FLYWHEEL_REVIEWED_DIR)."
    ),
) -> None:
    """Export completed reviews into the reviewed dataset as RTTM + UEM + manifest (idempotent)."""
    from labeling.client import LabelStudioClient, LabelStudioError
    from labeling.pull import pull_reviews
    from labeling.settings import LabelingSettings, credentials

    settings = LabelingSettings()
    try:
        with LabelStudioClient(
            settings.url, credentials(settings).token, settings.label_studio_timeout_s
        ) as c:
            report = pull_reviews(c, settings, out_dir=out_dir)
    except LabelStudioError as err:
        raise _fail(f"pull failed, nothing written: {err}") from None
    typer.echo(
        f"{len(report.added)} new and {len(report.updated)} updated reviews, {report.unchanged} unchanged; "
        f"{len(report.files_written)} files written under {report.out_dir}"
    )
