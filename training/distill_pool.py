"""The distillation pool: training chunks with the teacher's targets, computed once and cached.

Each shard holds new simulated conversations of the train speakers (params.yaml ``simulation``, plus
formant-warped voices and real music / sound-effect backgrounds: ``pipelines/background_noise.py``)
cut into 10 s windows. Per window the teacher's segmentation-3.0 runs once at its native length; each
half is a 5 s training chunk with

* ``audio``: int16 samples (any arm computes its own input from them);
* ``labels``: exact simulator activity of up to 3 local speakers on the 40 ms grid;
* ``teacher``: segmentation-3.0's powerset posteriors on the same grid (its local speakers are in
  its own order: the loss is permutation-invariant);
* ``embeddings`` / ``embedded``: the CAM++ embedding of each local speaker's solo speech in the
  chunk (the slots of ``labels``), and whether it had the 0.5 s that takes.

A warped voice needs no speaker label: CAM++ embeds the warped audio itself. Cost on this machine:
about 80 ms of one core per chunk (CAM++ most of it), 24 h of audio in ~12 min with two shards at a
time. DVC stage ``distill-pool`` (``flywheel data distill-pool``); shards are written whole, so an
interrupted build resumes at the first missing shard.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyannote.core import Annotation
from tqdm import tqdm

from flywheel.audio import SAMPLE_RATE
from flywheel.kaldi_fbank import kaldi_fbank, num_fbank_frames
from pipelines.background_noise import BackgroundConfig, NoiseBank
from pipelines.build_conversations import conversation_seed
from pipelines.inventory import Inventory
from pipelines.simulate import AudioCache, SimulationConfig, simulate_conversation
from training.data import ChunkConfig, frame_labels

WINDOW_S = 10.0  # the teacher's chunk; two training chunks each
MIN_EMBED_FBANK = 50  # fbank frames (0.5 s) of solo speech for a CAM++ target
SHARD_FILES = ("audio", "labels", "teacher", "embeddings", "embedded")


@dataclass
class PoolConfig:
    """One pool (params.yaml ``distill_pool.<profile>``)."""

    hours: float = 24.0
    shards: int = 8
    first_conversation: int = 1_000_000  # train conversations from this index: none a recipe saw
    formant_warps: list[float] = field(default_factory=lambda: [0.85, 0.92, 1.08, 1.17])
    formant_warp_prob: float = 0.5
    background: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, profile: str, params: dict[str, Any]) -> PoolConfig:
        pools = params.get("distill_pool", {})
        if profile not in pools:
            raise KeyError(f"no distill_pool.{profile} in params.yaml; choose one of {sorted(pools)}")
        return cls(**pools[profile])


def grid_average_matrix(num_in: int, frame_in_s: float, num_out: int, frame_out_s: float) -> np.ndarray:
    """``(num_out, num_in)`` row-stochastic matrix: each output frame is the mean of the input frames
    whose centres fall inside it (the nearest input frame when none does)."""
    centres = (np.arange(num_in) + 0.5) * frame_in_s
    owner = np.minimum((centres / frame_out_s).astype(int), num_out - 1)
    m = np.zeros((num_out, num_in), dtype=np.float32)
    m[owner, np.arange(num_in)] = 1.0
    for i in np.flatnonzero(m.sum(axis=1) == 0):
        m[i, min(num_in - 1, int((i + 0.5) * frame_out_s / frame_in_s))] = 1.0
    return m / m.sum(axis=1, keepdims=True)


def solo_fbank_frames(labels: np.ndarray, num_samples: int, frame_s: float) -> np.ndarray:
    """``(num_fbank, 3)`` bool: the fbank frames of a chunk where each local speaker speaks alone."""
    from flywheel.systems.teacher import grid_frames_of_fbank

    solo = labels * (labels.sum(axis=1, keepdims=True) == 1)
    grid = grid_frames_of_fbank(num_fbank_frames(num_samples), int(round(frame_s * SAMPLE_RATE)), len(labels))
    return solo[grid].astype(bool)


class PoolBuilder:
    """Labels the chunks of one shard with the teacher's targets.

    ``chunk`` and ``seed`` are all :meth:`chunks` needs for recordings that come with their own
    reference (the flywheel's reviewed items); :meth:`conversation` (simulated train conversations with
    real backgrounds) also needs the ``inventory``, the simulation settings ``sim`` and the ``bank``.
    """

    def __init__(
        self,
        chunk: ChunkConfig,
        seed: int,
        inventory: Inventory | None = None,
        sim: SimulationConfig | None = None,
        bank: NoiseBank | None = None,
        threads: int = 1,
    ):
        from flywheel.systems.teacher import TeacherBackend

        self.inventory = inventory
        self.sim = sim
        self.chunk = chunk
        self.seed = seed
        self.bank = bank
        self.teacher = TeacherBackend(threads=threads, embed_slots=False)
        window_frames = int(round(WINDOW_S / chunk.frame_s))
        self.to_grid = grid_average_matrix(
            self.teacher.num_frames, self.teacher.frame_s, window_frames, chunk.frame_s
        )
        self.audio = AudioCache(inventory, keep=True) if inventory is not None else None

    def conversation(self, index: int) -> dict[str, list[np.ndarray]]:
        """The chunks of simulated train conversation ``index``, real backgrounds mixed in."""
        if self.inventory is None or self.sim is None or self.bank is None:
            raise ValueError("simulated conversations need the inventory, simulation settings and bank")
        seed = conversation_seed(self.seed, "train", index)
        conv = simulate_conversation(self.inventory, "train", seed, self.sim, self.audio)
        return self.chunks(conv.waveform, conv.reference, np.random.default_rng((self.seed, index, 7)))

    def chunks(
        self, waveform: np.ndarray, reference: Annotation, rng: np.random.Generator | None = None
    ) -> dict[str, list[np.ndarray]]:
        """The training chunks of one recording with its exact ``reference`` (times from the
        recording's first sample): every whole 10 s window, halved; with ``rng`` a real background is
        mixed in first (simulated conversations), without it the audio is taken as it is (reviewed
        recordings from the flywheel). Empty lists when the recording is shorter than one window."""
        window = int(WINDOW_S * SAMPLE_RATE)
        out: dict[str, list[np.ndarray]] = {k: [] for k in SHARD_FILES}
        starts = range(0, len(waveform) - window + 1, window)
        if not starts:
            return out
        mixes = []
        for a in starts:
            piece = waveform[a : a + window]
            mixed = self.bank.mix(rng, piece)[0] if rng is not None and self.bank is not None else piece
            peak = float(np.max(np.abs(mixed))) + 1e-9
            mixes.append(mixed * min(1.0, 0.95 / peak))
        batch = np.stack(mixes).astype(np.float32)
        logprobs = self.teacher.align(self.teacher.segmentation.run(None, {"waveform": batch})[0])
        probs = np.einsum("oi,wic->woc", self.to_grid, np.exp(logprobs))
        n, frames = self.chunk.num_samples, self.chunk.num_frames
        for w, a in enumerate(starts):
            for h in range(int(WINDOW_S / self.chunk.chunk_s)):
                audio = batch[w, h * n : (h + 1) * n]
                labels, _ = frame_labels(reference, a / SAMPLE_RATE + h * self.chunk.chunk_s, self.chunk)
                emb, ok = self.embed_slots(audio, labels)
                out["audio"].append(np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))
                out["labels"].append(labels.astype(np.uint8))
                out["teacher"].append(probs[w, h * frames : (h + 1) * frames].astype(np.float16))
                out["embeddings"].append(emb.astype(np.float16))
                out["embedded"].append(ok)
        return out

    def embed_slots(self, audio: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CAM++ embedding of each local speaker's solo speech in one chunk, and which slots had the
        0.5 s it takes (the others are zero)."""
        solo = solo_fbank_frames(labels, len(audio), self.chunk.frame_s)
        emb = np.zeros((3, self.teacher.dimension), dtype=np.float32)
        ok = np.zeros(3, dtype=bool)
        if solo.sum(axis=0).max() < MIN_EMBED_FBANK:
            return emb, ok
        fbank = kaldi_fbank(audio)
        for k in range(3):
            if solo[:, k].sum() >= MIN_EMBED_FBANK:
                emb[k], ok[k] = self.teacher.embed(fbank[solo[:, k]]), True
        return emb, ok


def shard_conversations(cfg: PoolConfig, sim: SimulationConfig, shard: int) -> range:
    """The train conversation indices of ``shard``."""
    per_shard = max(1, int(np.ceil(cfg.hours * 3600 / (sum(sim.duration_s) / 2) / cfg.shards)))
    first = cfg.first_conversation + shard * per_shard
    return range(first, first + per_shard)


def build_shard(builder: PoolBuilder, indices: range, out_dir: Path) -> dict[str, Any]:
    """Write the shard of simulated conversations ``indices``."""
    pieces = (builder.conversation(i) for i in tqdm(indices, desc=out_dir.name, unit="conv"))
    return write_shard(pieces, out_dir, builder.chunk, {"conversations": [indices.start, indices.stop]})


def write_shard(
    pieces: Iterable[dict[str, list[np.ndarray]]],
    out_dir: Path,
    chunk: ChunkConfig,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Write one shard from the chunks of ``pieces`` (:meth:`PoolBuilder.chunks` results): all arrays
    at once, then ``info.json`` last (its presence marks the shard complete). Returns the info.

    Raises:
        ValueError: no piece gave a chunk (every recording shorter than one 10 s window).
    """
    parts: dict[str, list[np.ndarray]] = {k: [] for k in SHARD_FILES}
    for piece in pieces:
        for k, v in piece.items():
            parts[k].extend(v)
    if not parts["audio"]:
        raise ValueError(f"no chunk for shard {out_dir}: every recording is shorter than {WINDOW_S:g} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    for k, v in parts.items():
        np.save(out_dir / f"{k}.npy", np.stack(v))
    info = {
        "chunks": len(parts["audio"]),
        "hours": len(parts["audio"]) * chunk.chunk_s / 3600,
        "embedded_slots": int(np.stack(parts["embedded"]).sum()),
        "chunk": chunk.__dict__,
        **provenance,
    }
    (out_dir / "info.json").write_text(json.dumps(info, indent=2))
    return info


def build_pool(
    profile: str,
    params: dict[str, Any],
    data_dir: Path,
    shards: list[int] | None = None,
    out_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Build the missing shards of ``profile``'s pool (or just ``shards``); returns their info."""
    cfg = PoolConfig.load(profile, params)
    inventory = Inventory.load(data_dir / "inventory" / profile)
    durations = params["profiles"][profile]["conversations"]["duration_s"]
    sim = dataclasses.replace(
        SimulationConfig.from_params(params["simulation"], duration_s=durations),
        formant_warps=tuple(cfg.formant_warps),
        formant_warp_prob=cfg.formant_warp_prob,
    )
    chunk = ChunkConfig(**params["models"]["fast-cnn"]["chunk"])
    bank = NoiseBank(
        cfg=BackgroundConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.background.items()})
    )
    out_dir = out_dir or data_dir / "distill" / profile
    builder = PoolBuilder(chunk, params["seed"], inventory, sim, bank)
    done = []
    for shard in shards if shards is not None else range(cfg.shards):
        target = out_dir / f"shard-{shard:03d}"
        if (target / "info.json").exists():
            done.append(json.loads((target / "info.json").read_text()))
            continue
        done.append(build_shard(builder, shard_conversations(cfg, sim, shard), target))
    if shards is None:  # the whole pool: its manifest (the DVC stage's last write)
        manifest = {"config": dataclasses.asdict(cfg), "shards": done}
        (out_dir / "pool.json").write_text(json.dumps(manifest, indent=2))
    return done
