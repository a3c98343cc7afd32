"""``flywheel data ...``: build the speech data (inventory, conversations, real sets, pools)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer

from cli.options import PROFILE, data_dir
from flywheel.config import REPO_ROOT

data_app = typer.Typer(
    help="Build the speech data: inventory, simulated conversations, real-voice sets, ami-debug, the "
    "distillation pool.",
    no_args_is_help=True,
)


@data_app.command("install-packages")
def data_install_packages() -> None:
    """Install the Debian packages the data pipeline needs (TTS voices, sox, real recordings)."""
    raise typer.Exit(subprocess.call(["bash", str(REPO_ROOT / "pipelines" / "install_packages.sh")]))


@data_app.command("inventory")
def data_inventory(
    profile: str = PROFILE,
    out_dir: Path = typer.Option(None, help="Output directory (default: data/inventory/<profile>)."),
    workers: int = typer.Option(2, help="Parallel worker processes."),
) -> None:
    """Build the speaker inventory (utterances, tight speech intervals, speaker split)."""
    from pipelines.build_inventory import build_inventory

    build_inventory(profile, out_dir or data_dir() / "inventory" / profile, workers=workers)


@data_app.command("conversations")
def data_conversations(
    profile: str = PROFILE,
    inventory_dir: Path = typer.Option(None, help="Inventory directory (default: data/inventory/<profile>)."),
    out_dir: Path = typer.Option(None, help="Output directory (default: data/conversations/<profile>)."),
) -> None:
    """Simulate the fixed dev/test conversations (exact RTTM/UEM) of a profile."""
    from pipelines.build_conversations import main

    main(
        profile=profile,
        inventory_dir=inventory_dir or data_dir() / "inventory" / profile,
        out_dir=out_dir or data_dir() / "conversations" / profile,
    )


@data_app.command("ami")
def data_ami(
    out_dir: Path = typer.Option(None, help="Output directory (default: data/ami-debug)."),
) -> None:
    """Prepare the real ami-debug meetings as train/development/test evaluation folders."""
    from pipelines.ami import main

    main(source=None, out_dir=out_dir or data_dir() / "ami-debug")


@data_app.command("real")
def data_real(
    inventory_dir: Path = typer.Option(None, help="Inventory directory (default: data/inventory/full)."),
    out_dir: Path = typer.Option(None, help="Output directory (default: data/real)."),
) -> None:
    """Build dev-real, confirm-real and test-real: real voices only, held-out speakers, another acoustic
    recipe than training (the sets every decision is made on)."""
    from pipelines.build_real_sets import main

    main(
        inventory_dir=inventory_dir or data_dir() / "inventory" / "full",
        out_dir=out_dir or data_dir() / "real",
    )


@data_app.command("teacher")
def data_teacher(
    profile: str = PROFILE,
    inventory_dir: Path = typer.Option(None, help="Inventory directory (default: data/inventory/<profile>)."),
    out: Path = typer.Option(None, help="Output file (default: data/teacher/<profile>.npz)."),
    max_utterances: int = typer.Option(8, help="Utterances averaged per speaker."),
) -> None:
    """Resemblyzer d-vector of every training speaker: the target of embedding distillation."""
    from pipelines.inventory import Inventory
    from training.teacher import compute_teacher_vectors, save_teacher_vectors

    inventory = Inventory.load(inventory_dir or data_dir() / "inventory" / profile)
    speakers, vectors = compute_teacher_vectors(inventory, max_utterances=max_utterances)
    target = out or data_dir() / "teacher" / f"{profile}.npz"
    save_teacher_vectors(target, speakers, vectors)
    typer.echo(f"{len(speakers)} teacher vectors -> {target}")


@data_app.command("distill-pool")
def data_distill_pool(
    profile: str = PROFILE,
    shard: list[int] = typer.Option(None, help="Build only these shards (default: every missing one)."),
    out_dir: Path = typer.Option(None, help="Output directory (default: data/distill/<profile>)."),
) -> None:
    """Teacher-labelled training chunks (segmentation-3.0 posteriors + CAM++ embeddings) for distillation."""
    from flywheel.config import load_params
    from training.distill_pool import build_pool

    for info in build_pool(profile, load_params(), data_dir(), shards=shard or None, out_dir=out_dir):
        typer.echo(f"{info['chunks']} chunks ({info['hours']:.2f} h), {info['embedded_slots']} CAM++ targets")


@data_app.command("build")
def data_build(profile: str = PROFILE) -> None:
    """Everything for a profile: inventory, conversations and ami-debug (what `dvc repro` runs)."""
    data_inventory(profile=profile, out_dir=None, workers=2)
    data_conversations(profile=profile, inventory_dir=None, out_dir=None)
    data_ami(out_dir=None)
