"""``flywheel label ...``: the Label Studio review queue (mounted by ``cli.main``).

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
    items: Path = typer.Option(
        None, "--items", exists=True, dir_okay=False, help="Review items (JSONL); or --from-pseudo-labels."
    ),
    from_pseudo_labels: bool = typer.Option(
        False,
        "--from-pseudo-labels",
        help="Select items from the pseudo-labels (disagreement, low confidence, arm balance; "
        "params.yaml: review) instead of a JSONL file.",
    ),
    budget: int = typer.Option(
        None,
        "--budget",
        min=1,
        help="At most this many items get new tasks (default with --from-pseudo-labels: review.budget).",
    ),
    since: str = typer.Option(
        None, "--since", help="With --from-pseudo-labels: only requests logged since DATE (ISO, UTC)."
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Prediction database (default: FLYWHEEL_DATABASE_URL or SQLite)."
    ),
) -> None:
    """Import review items as Label Studio tasks with their segments as pre-annotations (idempotent)."""
    from labeling.client import LabelStudioClient, LabelStudioError
    from labeling.items import read_items
    from labeling.push import push_items
    from labeling.settings import LabelingSettings, credentials

    if (items is None) == (not from_pseudo_labels):
        raise _fail("give exactly one of --items FILE or --from-pseudo-labels")
    settings = LabelingSettings()
    try:
        if from_pseudo_labels:
            from labeling.pseudo_label import parse_since
            from labeling.selection import SelectionRules, review_items_from_log

            rules = SelectionRules.from_params()
            budget = budget or rules.budget
            selected = review_items_from_log(
                _database_url(database_url), _audio_dir(), rules, since=parse_since(since)
            )
            typer.echo(f"{len(selected)} pseudo-labelled items ranked; pushing at most {budget} new")
        else:
            selected = read_items(items)
        with LabelStudioClient(
            settings.url, credentials(settings).token, settings.label_studio_timeout_s
        ) as c:
            report = push_items(selected, c, settings, budget=budget)
    except (LabelStudioError, ValueError, OSError) as err:
        raise _fail(f"push failed: {err}") from None
    typer.echo(
        f"project {report.project_id}: {len(report.created)} new tasks from {report.items} items, "
        f"{len(report.skipped)} already there ({settings.url}/projects/{report.project_id}/data)"
    )


def _database_url(url: str | None) -> str:
    from flywheel.db.settings import DatabaseSettings

    return url or DatabaseSettings().resolved_database_url


def _audio_dir() -> Path:
    from flywheel.db.settings import DatabaseSettings

    return DatabaseSettings().resolved_audio_dir


def pseudo_label(
    since: str = typer.Option(
        None, "--since", help="Only requests logged at or after DATE (ISO date or time; naive = UTC)."
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="At most N requests this run (oldest first)."),
    local: bool = typer.Option(
        False, "--local", help="Run the teacher in this process, without Ray (small runs, tests)."
    ),
    address: str = typer.Option(
        None, "--address", help="Ray cluster address (default: RAY_ADDRESS; unset: embedded loopback Ray)."
    ),
    num_cpus: int = typer.Option(
        None, "--num-cpus", min=1, help="CPUs of the embedded Ray (default: all); one teacher per CPU."
    ),
    out_dir: Path = typer.Option(
        None, "--out-dir", help="Where <request_id>.rttm files go (default: data/pseudo-labels)."
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Prediction database (default: FLYWHEEL_DATABASE_URL or SQLite)."
    ),
    audio_dir: Path = typer.Option(
        None, "--audio-dir", help="Audio store (default: FLYWHEEL_AUDIO_DIR or runtime/audio)."
    ),
    retry_errors: bool = typer.Option(
        False, "--retry-errors", help="Try again requests whose earlier run failed or had no audio."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Run the teacher over logged audio without a pseudo-label: RTTM, confidence, disagreement."""
    from labeling.pseudo_label import DEFAULT_OUT_DIR, parse_since, run_pseudo_labels

    try:
        when = parse_since(since)
    except ValueError as err:
        raise _fail(f"--since: {err}") from None
    report = run_pseudo_labels(
        _database_url(database_url),
        audio_dir or _audio_dir(),
        out_dir=out_dir or DEFAULT_OUT_DIR,
        since=when,
        limit=limit,
        local=local,
        address=address,
        num_cpus=num_cpus,
        retry_errors=retry_errors,
        progress=progress,
    )
    typer.echo(
        f"{report.pending} pending: {report.labelled} labelled ({report.reused} reused from the same audio), "
        f"{report.failed} failed, {report.missing_audio} without audio; teacher ran on "
        f"{report.teacher_runs} files in {report.seconds:.1f} s ({report.mode})"
    )


label_app.command("pseudo-label")(pseudo_label)


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
