"""Build the fixed dev, test, confirm and tune conversation sets of a profile from its inventory.

``confirm`` draws the dev speakers on seeds of its own: a second, larger held-out sample used only
to confirm a model comparison that dev already selected on (``benchmarks/compare_models.py``), never
for tuning. ``tune`` does the same on other seeds: more audio for picking pipeline thresholds
(``flywheel tune --dev-set dev --dev-set tune``). Neither touches the test speakers.

Writes ``<out>/<split>/<uri>.wav|.rttm|.uem`` and ``<out>/manifest.json`` (seeds, durations,
speakers, overlap ratio, SNR per file, plus totals). Training conversations are not stored: the
trainer regenerates them from the inventory with seeds ``seed + i`` (see ``training/data.py``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from flywheel.audio import write_audio
from flywheel.config import load_params, profile_params
from flywheel.segments import overlap_ratio, write_rttm, write_uem
from pipelines.inventory import Inventory
from pipelines.simulate import AudioCache, SimulationConfig, simulate_conversation

# Seed offsets keep dev, test and training conversations on disjoint seed ranges.
SPLIT_SEED_OFFSET = {
    "train": 0,
    "dev": 10_000_000,
    "test": 20_000_000,
    "confirm": 30_000_000,
    "tune": 40_000_000,
}
# The speaker split each stored set draws its voices from.
SPEAKER_SPLIT = {"dev": "dev", "test": "test", "confirm": "dev", "tune": "dev"}


def conversation_seed(base_seed: int, split: str, index: int) -> int:
    """The seed of conversation ``index`` of ``split``."""
    return base_seed + SPLIT_SEED_OFFSET[split] + index


def build_conversations(
    profile: str, inventory_dir: Path, out_dir: Path, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Simulate and write the dev/test sets of ``profile``; returns the manifest."""
    params = params or load_params()
    prof = profile_params(profile, params)
    conv = prof["conversations"]
    cfg = SimulationConfig.from_params(params["simulation"], duration_s=conv["duration_s"])
    inventory = Inventory.load(inventory_dir)
    audio = AudioCache(inventory, keep=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    manifest: dict[str, Any] = {"profile": profile, "seed": params["seed"], "splits": {}}
    for split, speaker_split in SPEAKER_SPLIT.items():
        count = conv.get(split, 0)
        if not count:
            continue
        files = []
        for i in tqdm(range(count), desc=f"simulate {split}", unit="conv"):
            seed = conversation_seed(params["seed"], split, i)
            c = simulate_conversation(inventory, speaker_split, seed, cfg, audio, uri=f"{split}_{i:04d}")
            d = out_dir / split
            write_audio(d / f"{c.uri}.wav", c.waveform)
            write_rttm(d / f"{c.uri}.rttm", c.reference)
            write_uem(d / f"{c.uri}.uem", c.uri, c.uem)
            speech = c.reference.get_timeline().support().duration()
            files.append(
                {
                    "uri": c.uri,
                    "seed": seed,
                    "duration": round(c.duration, 3),
                    "speakers": c.speakers,
                    "speech_s": round(speech, 3),
                    "overlap_ratio": round(overlap_ratio(c.reference), 4),
                    **{k: v for k, v in c.info.items() if k not in ("seed", "split")},
                }
            )
        speech = sum(f["speech_s"] for f in files)
        manifest["splits"][split] = {
            "files": files,
            "count": len(files),
            "hours": sum(f["duration"] for f in files) / 3600,
            "overlap_ratio": sum(f["overlap_ratio"] * f["speech_s"] for f in files) / speech if speech else 0,
            "speakers": sorted({s for f in files for s in f["speakers"]}),
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(
    profile: str = typer.Option("smoke", help="Data profile from params.yaml (smoke or full)."),
    inventory_dir: Path = typer.Option(None, help="Inventory directory (default: data/inventory/<profile>)."),
    out_dir: Path = typer.Option(None, help="Output directory (default: data/conversations/<profile>)."),
) -> None:
    """Simulate the fixed dev/test/confirm/tune conversations of a profile."""
    inventory_dir = inventory_dir or Path("data/inventory") / profile
    out_dir = out_dir or Path("data/conversations") / profile
    started = time.perf_counter()
    manifest = build_conversations(profile, inventory_dir, out_dir)
    for split, info in manifest["splits"].items():
        typer.echo(
            f"{split}: {info['count']} conversations, {info['hours']:.2f} h, "
            f"{len(info['speakers'])} speakers, overlap {info['overlap_ratio']:.1%} of speech"
        )
    typer.echo(f"built in {time.perf_counter() - started:.1f} s -> {out_dir}")


if __name__ == "__main__":
    typer.run(main)
