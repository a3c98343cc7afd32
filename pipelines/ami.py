"""The real meeting set (``ami-debug``) in the evaluation-set layout, through the same RTTM/UEM code.

Input: a pyannote.database-style folder (``<uri>.wav``, ``debug.<subset>.{lst,rttm,uem}``).
Output: ``<out>/<subset>/<uri>.wav|.rttm|.uem`` for subsets train, development and test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from pyannote.core import Annotation

from flywheel.config import get_settings
from flywheel.segments import read_rttm, read_uem, write_rttm, write_uem

SUBSETS = ("train", "development", "test")


def prepare_ami_debug(source: Path, out_dir: Path) -> dict[str, list[str]]:
    """Copy audio and split the protocol's RTTM/UEM per file; returns the URIs of each subset."""
    if not source.is_dir():
        raise FileNotFoundError(
            f"ami-debug not found at {source} (the shared data sits in ../shared/data beside the "
            "checkout; elsewhere, set FLYWHEEL_SHARED_DATA_DIR)"
        )
    uris: dict[str, list[str]] = {}
    for subset in SUBSETS:
        lst = source / f"debug.{subset}.lst"
        names = [line.strip() for line in lst.read_text().splitlines() if line.strip()]
        references = read_rttm(source / f"debug.{subset}.rttm")
        uems = read_uem(source / f"debug.{subset}.uem")
        target = out_dir / subset
        target.mkdir(parents=True, exist_ok=True)
        for uri in names:
            shutil.copyfile(source / f"{uri}.wav", target / f"{uri}.wav")
            write_rttm(target / f"{uri}.rttm", references.get(uri, Annotation(uri=uri)))
            write_uem(target / f"{uri}.uem", uri, uems[uri])
        uris[subset] = names
    return uris


def main(
    source: Path = typer.Option(None, help="ami-debug folder (default: <shared data>/ami-debug)."),
    out_dir: Path = typer.Option(Path("data/ami-debug"), help="Where to write the per-file layout."),
) -> None:
    """Prepare the ami-debug meeting set as train/development/test evaluation folders."""
    source = source or get_settings().shared_data_dir / "ami-debug"
    for subset, names in prepare_ami_debug(source, out_dir).items():
        typer.echo(f"{subset}: {len(names)} files -> {out_dir / subset}")


if __name__ == "__main__":
    typer.run(main)
