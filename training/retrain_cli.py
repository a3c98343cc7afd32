"""``flywheel retrain``: the retrain loop, and its DVC stages as subcommands (mounted by ``cli.main``).

``flywheel retrain [--force]`` is what people and cron run (:mod:`training.retrain`); the subcommands
are the commands of the ``dvc.yaml`` stages, which ``dvc repro`` runs in the workspace (every path
relative to it). Imports are lazy so ``flywheel --help`` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

retrain_app = typer.Typer(
    help="Reviewed labels -> new DVC dataset version -> fine-tune, export, evaluate, register, gate. "
    "Without a subcommand: retrain when enough reviews arrived (the subcommands are the DVC stages).",
    invoke_without_command=True,
)

PARAMS = typer.Option(Path("params.yaml"), "--params", help="The workspace's params.yaml (DVC tracks it).")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg="red", err=True)
    return typer.Exit(1)


@retrain_app.callback()
def retrain(
    ctx: typer.Context,
    force: bool = typer.Option(
        False, "--force", help="Retrain even with fewer than retrain.min_new_items new reviewed items."
    ),
    commit: bool = typer.Option(
        True, "--commit/--no-commit", help="Commit dvc.lock to git for each dataset version and model."
    ),
    push: bool = typer.Option(True, "--push/--no-push", help="dvc push the dataset and the model outputs."),
    root: Path = typer.Option(
        None, "--root", help="The DVC + git workspace (default: this checkout).", file_okay=False
    ),
    tracking_uri: str = typer.Option(
        None, "--tracking-uri", help="MLflow server to register with (default: FLYWHEEL_MLFLOW_TRACKING_URI)."
    ),
) -> None:
    """Retrain when at least retrain.min_new_items reviewed items arrived since the last dataset
    version (or --force); otherwise do nothing."""
    if ctx.invoked_subcommand is not None:
        return
    from flywheel.config import REPO_ROOT
    from training.retrain import RetrainError
    from training.retrain import retrain as run_retrain

    try:
        report = run_retrain(
            root or REPO_ROOT,
            force=force,
            commit=commit,
            push=push,
            tracking_uri=tracking_uri,
            echo=typer.echo,
        )
    except (RetrainError, KeyError) as err:
        raise _fail(f"retrain failed: {err}\n(what finished is kept: run `flywheel retrain` again)") from None
    color = "green" if report.action == "retrained" else None
    typer.secho(report.message, fg=color)
    if report.commits:
        typer.echo(f"git commits: {' '.join(c[:12] for c in report.commits)}")


def _audio_gone(missing: list[str]) -> str:
    """The report's tail naming the items whose audio was already purged ("" when none)."""
    return f"; audio gone for {len(missing)}: {', '.join(missing)}" if missing else ""


def _pool_shard(
    build: Callable[..., dict[str, Any]], dataset_dir: Path, out: Path, params: Path | None
) -> dict[str, Any]:
    """Run a set-to-pool-shard builder (reviewed or pseudo-labelled) with the arm's chunk and the seed
    of ``params``; a builder's error is a clear CLI failure."""
    from training.data import ChunkConfig
    from training.retrain_stages import RetrainConfig, use_params

    p = use_params(params)
    chunk = ChunkConfig(**p["models"][RetrainConfig.from_params(p).model_type]["chunk"])
    try:
        return build(dataset_dir, out, chunk, int(p["seed"]))
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None


@retrain_app.command("dataset")
def dataset(
    reviewed: Path = typer.Option(
        Path("data/reviewed"), "--reviewed", help="The pull folder (manifest.jsonl)."
    ),
    out: Path = typer.Option(Path("data/reviewed-set"), "--out", help="The reviewed set (replaced whole)."),
    audio_dir: Path = typer.Option(
        None, "--audio-dir", help="Audio store to look in when a pushed path is gone (default: serving's)."
    ),
) -> None:
    """DVC stage reviewed-dataset: the reviewed dataset with its audio, as an evaluation-set folder."""
    from pipelines.reviewed_dataset import snapshot

    if audio_dir is None:
        from flywheel.db.settings import DatabaseSettings

        audio_dir = DatabaseSettings().resolved_audio_dir
    try:
        report = snapshot(reviewed, out, audio_dir)
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    gone = _audio_gone(report.missing_audio)
    typer.echo(
        f"{len(report.items)} items, {report.tasks} tasks, {report.reviewed_s:.1f} s reviewed -> {out}{gone}"
    )


@retrain_app.command("pool")
def pool(
    dataset_dir: Path = typer.Option(Path("data/reviewed-set"), "--dataset", help="The reviewed set."),
    out: Path = typer.Option(Path("data/distill/reviewed"), "--out", help="Pool folder (shard-000)."),
    params: Path = PARAMS,
) -> None:
    """DVC stage reviewed-pool: teacher targets for the reviewed spans (a distillation-pool shard)."""
    from training.reviewed_pool import build_reviewed_pool

    info = _pool_shard(build_reviewed_pool, dataset_dir, out, params)
    typer.echo(
        f"{info['chunks']} chunks ({info['hours'] * 3600:.0f} s), "
        f"{info['embedded_slots']} CAM++ targets -> {out}"
    )


@retrain_app.command("pseudo-dataset")
def pseudo_dataset(
    out: Path = typer.Option(
        Path("data/pseudo-set"), "--out", help="The pseudo-labelled set (replaced whole)."
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Prediction database (default: FLYWHEEL_DATABASE_URL or SQLite)."
    ),
    audio_dir: Path = typer.Option(
        None, "--audio-dir", help="Audio store (default: FLYWHEEL_AUDIO_DIR or runtime/audio)."
    ),
    params: Path = PARAMS,
) -> None:
    """DVC stage pseudo-dataset: confident ok pseudo-labels with their audio, as an evaluation-set folder.

    Confident: at or above retrain.pseudo_min_confidence; error and missing_audio rows never enter.
    """
    from pipelines.pseudo_dataset import snapshot_pseudo
    from training.retrain_stages import RetrainConfig, use_params

    cfg = RetrainConfig.from_params(use_params(params))
    if database_url is None or audio_dir is None:
        from flywheel.db.settings import DatabaseSettings

        settings = DatabaseSettings()
        database_url = database_url or settings.resolved_database_url
        audio_dir = audio_dir or settings.resolved_audio_dir
    try:
        report = snapshot_pseudo(database_url, out, audio_dir, cfg.pseudo_min_confidence)
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    gone = _audio_gone(report.missing_audio)
    typer.echo(
        f"{len(report.items)} items, {report.seconds:.1f} s, {report.below_threshold} below confidence "
        f"{cfg.pseudo_min_confidence:g} -> {out}{gone}"
    )


@retrain_app.command("pseudo-pool")
def pseudo_pool(
    dataset_dir: Path = typer.Option(Path("data/pseudo-set"), "--dataset", help="The pseudo-labelled set."),
    out: Path = typer.Option(Path("data/distill/pseudo"), "--out", help="Pool folder (shard-000)."),
    params: Path = PARAMS,
) -> None:
    """DVC stage pseudo-pool: teacher targets for the pseudo-labelled files (a distillation-pool shard)."""
    from training.pseudo_pool import build_pseudo_pool

    info = _pool_shard(build_pseudo_pool, dataset_dir, out, params)
    typer.echo(
        f"{info['chunks']} chunks ({info['hours'] * 3600:.0f} s), "
        f"{info['embedded_slots']} CAM++ targets, teacher labels as exact -> {out}"
    )


@retrain_app.command("distill")
def distill(
    out: Path = typer.Option(Path("checkpoints/retrain/fast-cnn"), "--out", help="Checkpoint folder."),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="Data folder the recipe's pool is in."),
    params: Path = PARAMS,
) -> None:
    """DVC stage retrain-distill: fine-tune the arm by distillation recipe retrain.recipe."""
    from training.retrain_stages import distill_stage, use_params

    try:
        summary = distill_stage(use_params(params), data_dir, out)
    except (FileNotFoundError, KeyError) as err:
        raise _fail(str(err)) from None
    typer.echo(
        f"best dev DER {summary['best_dev_der']:.4f} on {summary['dev_set']} -> {summary['checkpoint']}"
    )


@retrain_app.command("export")
def export(
    checkpoint: Path = typer.Option(
        Path("checkpoints/retrain/fast-cnn/best.pt"), "--checkpoint", help="The fine-tuned checkpoint."
    ),
    out: Path = typer.Option(Path("models/retrain/fast-cnn.onnx"), "--out", help="ONNX file."),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="Dev conversations for int8 calibration."),
    params: Path = PARAMS,
) -> None:
    """DVC stage retrain-export: ONNX with the pipeline settings it is gated and served with."""
    from training.export import ParityError
    from training.retrain_stages import export_stage, use_params

    try:
        report = export_stage(use_params(params), checkpoint, out, data_dir)
    except (FileNotFoundError, ParityError) as err:
        raise _fail(str(err)) from None
    typer.echo(f"wrote {report['onnx']} (parity {report['max_abs_diff']:.3g}, pipeline {report['pipeline']})")


@retrain_app.command("evaluate")
def evaluate(
    onnx: Path = typer.Option(Path("models/retrain/fast-cnn.onnx"), "--onnx", help="The exported model."),
    out: Path = typer.Option(Path("reports/retrain/evaluation.json"), "--out", help="Metrics file."),
    params: Path = PARAMS,
) -> None:
    """DVC stage retrain-evaluate: DER on the frozen gate set (promotion.gate_set)."""
    from training.retrain_stages import evaluate_stage, use_params

    try:
        metrics = evaluate_stage(use_params(params), onnx, out)
    except FileNotFoundError as err:
        raise _fail(str(err)) from None
    typer.echo(f"DER {metrics['der_gate']:.4f} on {metrics['gate_set']} ({metrics['files']} files)")


@retrain_app.command("gate")
def gate(
    onnx: Path = typer.Option(Path("models/retrain/fast-cnn.onnx"), "--onnx", help="The exported model."),
    evaluation: Path = typer.Option(
        Path("reports/retrain/evaluation.json"), "--evaluation", help="Its gate-set metrics."
    ),
    summary: Path = typer.Option(
        Path("checkpoints/retrain/fast-cnn/summary.json"), "--summary", help="The distillation summary."
    ),
    dataset_dir: Path = typer.Option(Path("data/reviewed-set"), "--dataset", help="The reviewed set."),
    out: Path = typer.Option(Path("reports/retrain/gate.json"), "--out", help="The decision."),
    params: Path = PARAMS,
) -> None:
    """DVC stage retrain-gate: register in MLflow with the dataset version, then the gate."""
    from registry.models import RegistryUnavailable
    from training.retrain_stages import gate_stage, use_params

    try:
        result = gate_stage(use_params(params), Path.cwd(), onnx, evaluation, dataset_dir, out, summary)
    except RegistryUnavailable as err:
        raise _fail(f"{err}: nothing registered") from None
    color = {"champion": "green", "challenger": "yellow"}.get(result["action"], "red")
    typer.secho(result["summary"], fg=color)
