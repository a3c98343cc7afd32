"""Declared grid search of pyannote's own pipeline hyper-parameters on dev sets (teacher environment).

The ``pyannote`` peer is pyannote.audio 4.0.7's ``SpeakerDiarization`` over segmentation-3.0 and
CAM++ (``flywheel/systems/pyannote_peer.py``). Its published 3.1 hyper-parameters were tuned for
another embedding; here the clustering threshold and minimum cluster size are searched on the dev
sets (dev-real + ami-debug dev by default; never a test set). pyannote caches segmentations and
embeddings per file in training mode, so every grid point only re-clusters. Total DER (collar 0,
overlap scored) decides; ``--write-params`` stores the winner's ``threshold`` and
``min_cluster_size`` under ``systems.pyannote`` in params.yaml. Run with the teacher interpreter::

    PYTHONPATH=. .venv-teacher/bin/python -m experiments.tune_pyannote --dev-set data/real/dev-real \\
        --dev-set data/ami-debug/development --write-params
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from experiments.tune import write_yaml_value
from flywheel.audio import load_audio
from flywheel.config import get_settings, load_params
from flywheel.metrics import aggregate, der_breakdown
from flywheel.testset import iter_test_set

THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1)  # euclidean between unit vectors
MIN_CLUSTER_SIZES = (6, 12)


def grid() -> list[dict[str, Any]]:
    """Every hyper-parameter set the search tries (declared here, in full)."""
    return [
        {
            "segmentation": {"min_duration_off": 0.0},
            "clustering": {"method": "centroid", "min_cluster_size": size, "threshold": threshold},
        }
        for threshold, size in itertools.product(THRESHOLDS, MIN_CLUSTER_SIZES)
    ]


def search(dev_sets: list[Path], segmentation_step: float = 0.1) -> list[dict[str, Any]]:
    """DER of every grid point over all files of ``dev_sets``, best first."""
    import torch

    from flywheel.systems.pyannote_peer import as_file, build_pipeline, segments_of

    pipeline = build_pipeline(segmentation_step=segmentation_step)
    pipeline.training = True  # cache segmentation and embeddings inside each file dict
    items = [item for d in dev_sets for item in iter_test_set(d)]
    files = [as_file(load_audio(item.audio_path), item.uri) for item in items]
    table = []
    for point in tqdm(grid(), desc="pyannote grid", unit="point"):
        pipeline.instantiate(point)
        breakdowns = []
        for item, file in zip(items, files, strict=True):
            with torch.inference_mode():
                hypothesis = _annotation(segments_of(pipeline(file)), item.uri)
            breakdowns.append(der_breakdown(item.reference, hypothesis, item.uem))
        total = aggregate(breakdowns)
        table.append({"hyperparameters": point, "der": total.der})
    return sorted(table, key=lambda row: row["der"])


def _annotation(segments: list[tuple[float, float, str]], uri: str):
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for start, end, label in segments:
        annotation[Segment(start, end)] = label
    return annotation


def main(
    dev_set: list[Path] = typer.Option(..., help="Dev folder (wav + rttm); repeat for several. Never test."),
    segmentation_step: float = typer.Option(
        None, help="pyannote's step, as a share of the 10 s chunk (default: params.yaml systems.pyannote)."
    ),
    write_params: bool = typer.Option(False, help="Write the best point into params.yaml."),
    output: Path = typer.Option(None, help="Also write the whole table as JSON here."),
) -> None:
    """Search pyannote's clustering hyper-parameters on dev sets (lowest total DER)."""
    if segmentation_step is None:
        segmentation_step = float(load_params()["systems"]["pyannote"]["segmentation_step"])
    table = search(dev_set, segmentation_step)
    for row in table:
        c = row["hyperparameters"]["clustering"]
        typer.echo(
            f"threshold {c['threshold']:.3f}  min_cluster_size {c['min_cluster_size']:2d}  "
            f"DER {row['der']:.4f}"
        )
    best = table[0]
    typer.echo(f"best: {json.dumps(best['hyperparameters'])} DER {best['der']:.4f}")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(table, indent=2))
    if write_params:
        clustering = best["hyperparameters"]["clustering"]
        params_file = get_settings().params_file
        for key in ("threshold", "min_cluster_size"):
            write_yaml_value(params_file, ["systems", "pyannote", key], clustering[key])
        typer.echo(f"wrote systems.pyannote threshold / min_cluster_size to {params_file}")


if __name__ == "__main__":
    typer.run(main)
