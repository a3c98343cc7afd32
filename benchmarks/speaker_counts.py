"""How a neural system's clustering holds up when recordings have fewer or more speakers than dev.

The dev and test sets have 2-4 speakers per conversation. Clustering settings tuned there could break
single-speaker recordings (over-splitting) or crowded ones (under-counting), which real traffic has.
This script simulates conversations from **dev** speakers with 1 and with 5-6 speakers (fixed seeds,
nothing written to disk), runs the model once per file and scores two pipeline settings side by side:
the system as configured in params.yaml and a comparison given as ``key=value`` overrides.

Usage: ``python benchmarks/speaker_counts.py --system fast-cnn
--compare step_s=2.5,min_cluster_share=0,refine_iterations=0``
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from tqdm import tqdm

from benchmarks.common import override_params, parse_overrides
from flywheel.config import REPO_ROOT, load_params
from flywheel.metrics import aggregate, der_breakdown
from pipelines.inventory import Inventory
from pipelines.simulate import AudioCache, SimulationConfig, simulate_conversation

SEED = 555_000  # far from the dev/test/train conversation seeds


def main(
    system_name: str = typer.Option("fast-cnn", "--system", help="Neural system (fast-cnn, distilhubert)."),
    compare: str = typer.Option(
        "step_s=2.5,min_cluster_share=0,refine_iterations=0",
        help="Pipeline overrides for the comparison row (key=value,...).",
    ),
    files: int = typer.Option(12, min=1, help="Conversations per speaker-count range."),
    inventory_dir: Path = typer.Option(
        REPO_ROOT / "data" / "inventory" / "full", help="Inventory whose dev speakers are used."
    ),
) -> None:
    """Print DER (collar 0, overlap scored) for 1-speaker and 5-6-speaker recordings of dev speakers."""
    from flywheel.systems.onnx_system import OnnxSystem

    params = load_params()
    inventory = Inventory.load(inventory_dir)
    base = SimulationConfig.from_params(params["simulation"], duration_s=(30, 120))
    systems = {"configured": OnnxSystem(system_name), "compared": OnnxSystem(system_name)}
    systems["compared"].params = override_params(systems["compared"].params, parse_overrides(compare))
    audio = AudioCache(inventory)
    typer.echo(f"{system_name}: configured vs {compare}")
    for label, counts in (("1 speaker", (1, 1)), ("5-6 speakers", (5, 6))):
        cfg = dataclasses.replace(base, speakers=counts)
        rows: dict[str, list] = {name: [] for name in systems}
        for i in tqdm(range(files), desc=label, unit="file"):
            conv = simulate_conversation(inventory, "dev", SEED + 100 * counts[0] + i, cfg, audio)
            prepared: dict[float, object] = {}  # the model runs once per chunk step
            for name, system in systems.items():
                step = system.params.step_s
                if step not in prepared:
                    prepared[step] = system.prepare(conv.waveform)
                hyp = system.cluster(prepared[step], uri=conv.uri)
                rows[name].append(der_breakdown(conv.reference, hyp, conv.uem))
        for name, scored in rows.items():
            typer.echo(f"{label:13s} {name:10s} {aggregate(scored).summary()}")


if __name__ == "__main__":
    typer.run(main)
