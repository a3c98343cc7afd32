"""The real-voice evaluation sets: ``dev-real``, ``confirm-real`` and ``test-real``.

Every voice is a real recording (LibriSpeech, Asterisk prompts, Fish Fillets dialogue): no TTS, no
pitch-shifted or formant-warped copies. The speakers come from the inventory's held-out splits
(``pipelines/splits.py``) and are disjoint between sets: the ``dev`` persons are halved by a stable
hash into ``dev-real`` (tuning) and ``confirm-real`` (confirming a choice made on dev), and
``test-real`` takes the ``test`` persons (report only). Turns are drawn as in the simulator, but the
acoustics follow ``pipelines/real_acoustics.py``, a recipe the training simulator never produces.

Writes ``<out>/<set>/<uri>.wav|.rttm|.uem`` and ``<out>/manifest.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer
from pyannote.core import Segment
from tqdm import tqdm

from flywheel.audio import SAMPLE_RATE, write_audio
from flywheel.config import load_params
from flywheel.segments import annotation_from_turns, overlap_ratio, write_rttm, write_uem
from pipelines.inventory import Inventory, Utterance
from pipelines.real_acoustics import RealRecipe, render
from pipelines.simulate import AudioCache, SimulationConfig, choose_speakers, draw_turns
from pipelines.splits import namespace_of, stable_hash

# Speaker namespaces recorded from real people (see pipelines/sources).
REAL_NAMESPACES = ("libri", "asterisk", "fillets-cs", "fillets-nl")
# set -> (inventory split, which half of it by hash: 0, 1 or None for all)
REAL_SETS: dict[str, tuple[str, int | None]] = {
    "dev-real": ("dev", 0),
    "confirm-real": ("dev", 1),
    "test-real": ("test", None),
}
SEED_OFFSET = {"dev-real": 50_000_000, "confirm-real": 60_000_000, "test-real": 70_000_000}


def is_real_voice(speaker: str) -> bool:
    """A recorded person, not a synthetic or transformed voice."""
    return namespace_of(speaker) in REAL_NAMESPACES and "@" not in speaker


def real_pool(inventory: Inventory, set_name: str) -> dict[str, list[Utterance]]:
    """The real speakers of ``set_name`` with their utterances that have speech."""
    split, half = REAL_SETS[set_name]
    pool: dict[str, list[Utterance]] = {}
    for spk, utts in inventory.by_speaker(split).items():
        if not is_real_voice(spk):
            continue
        if half is not None and int(stable_hash(f"real-half:{spk}"), 16) % 2 != half:
            continue
        usable = [u for u in utts if u.speech]
        if usable:
            pool[spk] = usable
    return pool


def simulate_real(
    pool: dict[str, list[Utterance]],
    seed: int,
    cfg: SimulationConfig,
    recipe: RealRecipe,
    audio: AudioCache,
    uri: str,
) -> tuple[np.ndarray, Any, dict[str, Any]]:
    """One conversation of 2-4 speakers of ``pool``: ``(waveform, reference, info)``."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(cfg.speakers[0], cfg.speakers[1] + 1))
    speakers = choose_speakers(rng, sorted(pool), min(count, len(pool)))
    target = float(rng.uniform(*cfg.duration_s))
    turns = draw_turns(rng, speakers, pool, audio, cfg, target)
    n = int((max(t.end for t in turns) + float(rng.uniform(0.3, 1.5))) * SAMPLE_RATE)
    tracks = {spk: np.zeros(n, dtype=np.float32) for spk in speakers}
    for t in turns:
        i0 = int(round(t.start * SAMPLE_RATE))
        seg = t.audio / (np.sqrt(np.mean(t.audio**2)) + 1e-9) * 0.05
        seg = seg * 10 ** (rng.uniform(-3.0, 3.0) / 20)
        tracks[t.speaker][i0 : i0 + len(seg)] += seg[: n - i0]
    waveform, drawn = render(rng, tracks, recipe)
    ref_turns = [(t.start + s, t.start + e, t.speaker) for t in turns for s, e in t.speech]
    reference = annotation_from_turns(ref_turns, uri=uri).support(collar=0.0)
    return waveform, reference, {"seed": seed, "speakers": speakers, **drawn}


def build_real_sets(inventory_dir: Path, out_dir: Path, params: dict[str, Any] | None = None) -> dict:
    """Build every set of ``params.yaml: real_sets`` from the inventory; returns the manifest."""
    params = params or load_params()
    conf = params["real_sets"]
    cfg = SimulationConfig.from_params(conf["turns"], duration_s=conf["duration_s"])
    recipe = RealRecipe(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in conf.get("acoustics", {}).items()}
    )
    inventory = Inventory.load(inventory_dir)
    audio = AudioCache(inventory, keep=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    manifest: dict[str, Any] = {"seed": params["seed"], "sets": {}}
    for name in REAL_SETS:
        pool = real_pool(inventory, name)
        if len(pool) < cfg.speakers[0]:
            raise ValueError(
                f"{name} has {len(pool)} real speakers in {inventory_dir}; needs {cfg.speakers[0]}"
            )
        files = []
        for i in tqdm(range(int(conf["count"][name])), desc=name, unit="conv"):
            uri = f"{name}_{i:03d}"
            seed = params["seed"] + SEED_OFFSET[name] + i
            waveform, ref, info = simulate_real(pool, seed, cfg, recipe, audio, uri)
            d = out_dir / name
            write_audio(d / f"{uri}.wav", waveform)
            write_rttm(d / f"{uri}.rttm", ref)
            duration = len(waveform) / SAMPLE_RATE
            write_uem(d / f"{uri}.uem", uri, [Segment(0.0, duration)])
            files.append(
                {
                    "uri": uri,
                    "duration": round(duration, 3),
                    "overlap_ratio": round(overlap_ratio(ref), 4),
                    **info,
                }
            )
        manifest["sets"][name] = {
            "count": len(files),
            "hours": round(sum(f["duration"] for f in files) / 3600, 3),
            "speakers": sorted(pool),
            "files": files,
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(
    inventory_dir: Path = typer.Option(Path("data/inventory/full"), help="Inventory directory."),
    out_dir: Path = typer.Option(Path("data/real"), help="Where the sets are written."),
) -> None:
    """Build dev-real, confirm-real and test-real: real voices, held-out speakers, another acoustic recipe."""
    started = time.perf_counter()
    manifest = build_real_sets(inventory_dir, out_dir)
    for name, info in manifest["sets"].items():
        typer.echo(
            f"{name}: {info['count']} conversations, {info['hours']:.2f} h, {len(info['speakers'])} speakers"
        )
    typer.echo(f"built in {time.perf_counter() - started:.1f} s -> {out_dir}")


if __name__ == "__main__":
    typer.run(main)
