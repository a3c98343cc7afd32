"""Model commands: ``train``, ``distill``, ``export-onnx``, ``average-checkpoints``."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.options import TRACK
from flywheel.config import REPO_ROOT


def train(
    model: str = typer.Option("fast-cnn", "--model", "-m", help="Model type: fast-cnn or distilhubert."),
    config: str = typer.Option(
        "smoke", "--config", "-c", help="Training recipe from params.yaml (smoke, full)."
    ),
    out_dir: Path = typer.Option(
        None, "--out-dir", "-o", help="Checkpoints (default: checkpoints/<model>/<config>)."
    ),
    resume: bool = typer.Option(True, help="Resume from <out-dir>/last.pt when it exists."),
    track: bool = TRACK,
    init_from: Path = typer.Option(
        None,
        "--init-from",
        help="Start from these weights: a training checkpoint, or for distilhubert a local pretrained "
        "encoder in the ntu-spml/distilhubert layout (directory with config.json + weights). "
        "Nothing is downloaded.",
    ),
) -> None:
    """Train a model on simulated conversations (early stopping on dev DER, resumable checkpoints)."""
    from training.train import train as run_training

    summary = run_training(model, config, out_dir, resume=resume, track=track, init_from=init_from)
    typer.echo(
        f"best dev DER {summary['best_dev_der']:.4f} (threshold {summary['best_threshold']}) "
        f"after {summary['epochs']} epochs -> {summary['checkpoint']}"
    )


def distill(
    model: str = typer.Option("fast-cnn", "--model", "-m", help="Model type: fast-cnn or distilhubert."),
    recipe: str = typer.Option(
        "smoke", "--recipe", "-r", help="Distillation recipe (params.yaml `distill`)."
    ),
    out_dir: Path = typer.Option(
        None, "--out-dir", "-o", help="Checkpoints (default: checkpoints/<model>/<recipe>)."
    ),
    resume: bool = typer.Option(True, help="Resume from <out-dir>/last.pt when it exists."),
    init_from: Path = typer.Option(
        None,
        "--init-from",
        help="Start a new run from these weights (else the recipe's init_from): a checkpoint of the same "
        "architecture, or for distilhubert a local ntu-spml/distilhubert encoder (directory with "
        "config.json + weights). Nothing is downloaded.",
    ),
) -> None:
    """Distil an arm from the teacher: segmentation-3.0 posteriors + CAM++ embeddings of the
    distillation pool (`flywheel data distill-pool`), checkpoints chosen on real-voice dev DER."""
    from training.distill import distill as run_distill

    summary = run_distill(model, recipe, out_dir, resume=resume, init_from=init_from)
    typer.echo(
        f"best dev DER {summary['best_dev_der']:.4f} on {summary['dev_set']} (threshold "
        f"{summary['best_threshold']}) after {summary['epochs']} epochs -> {summary['checkpoint']}"
    )


def export_onnx(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Training checkpoint (best.pt)."),
    model_type: str = typer.Option("fast-cnn", "--model-type", help="fast-cnn or distilhubert (checked)."),
    out: Path = typer.Option(None, "--out", help="ONNX file (default: models/<model-type>.onnx)."),
    optimization_level: str = typer.Option(
        "extended",
        "--optimization-level",
        help="onnxruntime graph optimisation: disabled, basic, extended, all.",
    ),
    quantize: str = typer.Option(
        None,
        "--quantize",
        help="int8: dynamic int8 MatMul/Gemm (fast-cnn) or static int8 Conv/MatMul calibrated on dev "
        "conversations (distilhubert); int8-static: static int8 for any model (the fast-cnn release).",
    ),
    tolerance: float = typer.Option(
        None, help="Max abs difference allowed vs PyTorch (default: 1e-3; int8 0.05; static int8 0.25)."
    ),
) -> None:
    """Export a checkpoint to ONNX with graph optimisation, optional int8, and a parity check."""
    from training.export import ParityError, load_checkpoint
    from training.export import export_onnx as run_export

    _, ckpt = load_checkpoint(checkpoint)
    if ckpt["model_type"] != model_type:
        typer.secho(f"checkpoint holds a {ckpt['model_type']} model, not {model_type}", fg="red", err=True)
        raise typer.Exit(2)
    out = out or REPO_ROOT / "models" / f"{model_type}{'-int8' if quantize else ''}.onnx"
    try:
        report = run_export(checkpoint, out, optimization_level, quantize, tolerance)
    except ParityError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"parity max abs diff {report['max_abs_diff']:.3g} (tolerance {report['tolerance']:g})")
    typer.echo(f"wrote {report['onnx']} ({report['bytes'] / 1e6:.1f} MB)")


def average_checkpoints(
    checkpoints: list[Path] = typer.Argument(
        ...,
        help="Two or more best.pt checkpoints of one architecture (a Fast CNN with fewer blocks than the "
        "first is grown to its depth).",
        exists=True,
        dir_okay=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the averaged checkpoint."),
) -> None:
    """Average the weights of checkpoints (a model soup); export it like any best.pt."""
    from training.train import average_checkpoints as run_average

    try:
        run_average(checkpoints, out)
    except ValueError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {out}: mean weights of {len(checkpoints)} checkpoints")
