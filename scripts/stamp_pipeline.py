"""Stamp an ONNX model with the pipeline settings it is served with, weights untouched.

The settings are ``params.yaml: systems.<name>`` now (threshold, stitching, smoothing, step, ...;
:func:`flywheel.systems.onnx_system.pipeline_settings`). Only the file's flywheel metadata changes:
the script checks that the stamped file gives the same outputs as the original on the same input
(bit for bit) before replacing it, and updates the release card ``models/release/<name>.json``
(``pipeline``, ``onnx_sha256``) when the file is a release model. Run it after tuning a release
model's pipeline (``flywheel tune --write-params``):

    python scripts/stamp_pipeline.py fast-cnn distilhubert
    python scripts/stamp_pipeline.py fast-cnn --onnx candidate.onnx
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flywheel.config import load_params
from flywheel.onnx_model import OnnxSegmenter, stamp_pipeline
from flywheel.systems.onnx_system import pipeline_settings, release_model_path


def probe_input(segmenter: OnnxSegmenter, batch: int = 2) -> np.ndarray:
    """A deterministic model input of the right shape for ``segmenter``'s model."""
    meta = segmenter.metadata
    samples = int(round(meta.chunk_s * 16000))
    rng = np.random.default_rng(0)
    if meta.features.kind == "waveform":
        return (rng.standard_normal((batch, samples)) * 0.1).astype(np.float32)
    frames = samples // meta.features.hop
    return (rng.standard_normal((batch, meta.features.n_mels, frames)) * 2 - 5).astype(np.float32)


def stamp(name: str, onnx_path: Path, pipeline: dict) -> bool:
    """Stamp ``onnx_path`` with ``pipeline`` after a parity check; returns False when unchanged.

    Raises:
        RuntimeError: the stamped file's outputs differ from the original's.
    """
    before = OnnxSegmenter(onnx_path)
    if before.metadata.pipeline == pipeline:
        return False
    with tempfile.TemporaryDirectory(dir=onnx_path.parent) as tmp:
        staged = stamp_pipeline(onnx_path, pipeline, Path(tmp) / onnx_path.name)
        after = OnnxSegmenter(staged)
        x = probe_input(before)
        for a, b in zip(before(x), after(x), strict=True):
            if not np.array_equal(a, b):
                raise RuntimeError(f"{onnx_path}: stamped model outputs differ; not replaced")
        if after.metadata.pipeline != pipeline:
            raise RuntimeError(f"{staged}: pipeline not stored")
        staged.replace(onnx_path)
    return True


def update_card(name: str, onnx_path: Path, pipeline: dict) -> Path | None:
    """``pipeline`` and the new ``onnx_sha256`` in the release card next to a release model."""
    import hashlib

    card_path = onnx_path.with_suffix(".json")
    if onnx_path.resolve() != release_model_path(name).resolve() or not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    card["pipeline"] = pipeline
    card["onnx_sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def main(
    names: list[str] = typer.Argument(..., help="Systems whose params.yaml settings to stamp."),
    onnx: Path = typer.Option(None, help="File to stamp (default: the release model of each name)."),
) -> None:
    """Stamp each model with ``params.yaml: systems.<name>``'s pipeline settings."""
    systems = load_params().get("systems", {})
    for name in names:
        path = onnx or release_model_path(name)
        pipeline = pipeline_settings(systems.get(name, {}))
        changed = stamp(name, path, pipeline)
        card = update_card(name, path, pipeline)
        typer.echo(
            f"{name}: {path} "
            + ("stamped" if changed else "already carries these settings")
            + f" {json.dumps(pipeline, sort_keys=True)}"
            + (f"; card {card}" if card else "")
        )


if __name__ == "__main__":
    typer.run(main)
