"""Tune how sharply a model pools each local speaker's frames into its embedding, on a dev set.

The embedding head is trained on the reference single-speaker frames (hard 0/1 masks); at inference
it can only use the model's own probability that a local speaker speaks alone. Those probabilities
are soft: silence and the other speakers' frames get some weight too. ``forward`` therefore weights
each frame by ``P(alone) ** embedding_pool_power``; this script scores dev DER (the served pipeline,
clustering threshold re-picked per power) for a few powers and can write the best one into
params.yaml (``models.<type>.embedding_pool_power``), from where export and later training take it.

    python -m experiments.tune_pooling --checkpoint checkpoints/fast-cnn/teacher/best.pt \\
        --powers 1,2,3,4,6 --write-params
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from experiments.tune import ParamsFileOption, parse_thresholds, write_yaml_value

DEFAULT_POWERS = "1,2,3,4,6"
DEFAULT_THRESHOLDS = "0.3:0.55:0.025"


def score_powers(
    model: Any,
    ckpt: dict[str, Any],
    dev_set: Path,
    powers: list[float],
    thresholds: list[float],
    limit: int | None = None,
) -> list[dict[str, float]]:
    """Dev DER (collar 0) of a loaded checkpoint (``training.export.load_checkpoint``) at each pooling
    power, each at its best threshold.

    Rows hold ``power, der, threshold``; the pipeline's other hyper-parameters are the served ones
    (params.yaml ``systems.<model type>``).
    """
    from flywheel.config import load_params
    from training.data import ChunkConfig
    from training.export import checkpoint_features
    from training.train import dev_der

    params = load_params()
    pipeline = params["systems"][ckpt["model_type"]]
    chunk = ChunkConfig(**ckpt["chunk"])
    features = checkpoint_features(model, ckpt)
    rows = []
    for power in powers:
        model.pool_power = float(power)
        der, threshold = dev_der(model, dev_set, chunk, thresholds, limit, features, pipeline)
        rows.append({"power": float(power), "der": der, "threshold": threshold})
        typer.echo(f"power {power:g}: dev DER {100 * der:.2f} % (threshold {threshold:g})")
    return rows


app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def main(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", "-c", help="best.pt / last.pt of a trained model.", exists=True)
    ],
    dev_set: Annotated[
        Path,
        typer.Option(
            "--dev-set", "-d", help="Folder of <uri>.wav + <uri>.rttm files.", exists=True, file_okay=False
        ),
    ] = Path("data/conversations/full/dev"),
    powers: Annotated[str, typer.Option("--powers", help="Comma list of pooling powers to try.")] = (
        DEFAULT_POWERS
    ),
    thresholds: Annotated[
        str, typer.Option("--thresholds", "-t", help="Clustering thresholds: comma list or start:stop:step.")
    ] = DEFAULT_THRESHOLDS,
    limit: Annotated[int | None, typer.Option("--limit", help="Score only the first N dev files.")] = None,
    write_params: Annotated[
        bool,
        typer.Option(
            "--write-params/--no-write-params",
            help="Write the best power into params.yaml: models.<type>.embedding_pool_power.",
        ),
    ] = False,
    params_file: ParamsFileOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the table as JSON.")
    ] = None,
) -> None:
    """Pick the embedding pooling power with the lowest dev DER."""
    from flywheel.config import get_settings
    from training.export import load_checkpoint

    grid = [float(p) for p in powers.split(",") if p.strip()]
    if not grid or any(p <= 0 for p in grid):
        raise typer.BadParameter(f"powers must be positive numbers, got {powers!r}")
    model, ckpt = load_checkpoint(checkpoint)
    rows = score_powers(model, ckpt, dev_set, grid, parse_thresholds(thresholds), limit)
    best = min(rows, key=lambda r: r["der"])
    typer.echo(f"best: power {best['power']:g}, dev DER {100 * best['der']:.2f} %")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"checkpoint": str(checkpoint), "rows": rows, "best": best}, indent=2))
    if write_params:
        model_type = ckpt["model_type"]
        target = params_file or get_settings().params_file
        write_yaml_value(target, ["models", model_type, "embedding_pool_power"], best["power"])
        typer.echo(f"wrote models.{model_type}.embedding_pool_power: {best['power']:g} to {target}")


if __name__ == "__main__":
    app()
