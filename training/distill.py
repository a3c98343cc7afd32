"""Distilling an arm from the teacher (nanoGPT-style: one short loop plus its loss).

The data is the distillation pool (``training/distill_pool.py``): 5 s chunks with exact simulator
labels, segmentation-3.0 posteriors and one CAM++ embedding per local speaker. Per batch

* ``hard``: permutation-invariant powerset cross-entropy to the exact labels (``pit_powerset_loss``);
* ``soft``: permutation-invariant cross-entropy to the teacher's powerset posteriors (its local
  speakers come in its own order, so the best of the 6 slot orders is taken per chunk);
* ``embed``: cosine distance between each local speaker's embedding (pooled over its exact solo
  frames) and the CAM++ embedding of the same speech, centred by the pool mean as our embedding head
  centres its own. No speaker labels: the geometry is CAM++'s, learnt from ~200k speakers.

An arm with shorter chunks or a finer frame grid than the pool's (DistilHuBERT: 1.5 s at 20 ms) trains
on a random crop of each pool chunk, its labels and teacher posteriors repeated onto its grid
(:func:`crop_chunk`); a crop keeps its speakers' CAM++ targets (the same voices).

Checkpoints are chosen by DER on a real-voice dev set (``dev_set``, default ``real/dev-real``), as
served (the arm's ``systems`` settings, cosine threshold picked on a grid); ``last.pt`` (weights +
optimiser + state) resumes an interrupted run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from flywheel.audio import SAMPLE_RATE
from flywheel.config import get_settings, load_params, resolve_recipe
from flywheel.features import FeatureConfig, limit_blas_threads, model_input
from training.data import ChunkConfig
from training.distill_pool import SHARD_FILES
from training.losses import pit_powerset_loss
from training.models.powerset import CLASSES, permutations
from training.models.registry import build_model


@dataclass
class DistillConfig:
    """One distillation recipe (params.yaml ``distill.<model>.<name>``)."""

    # pool directory (or several, or single shard directories), relative to the data directory; a
    # retrain mixes the reviewed pool with part of the full one so the model does not forget
    pool: str | list[str] = "distill/full"
    dev_set: str = "real/dev-real"  # checkpoint selection: real voices, held-out speakers
    architecture: dict[str, Any] = field(default_factory=lambda: {"embedding_dim": 192})
    epochs: int = 12
    patience: int = 4
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    hard_weight: float = 1.0
    soft_weight: float = 1.0
    embed_weight: float = 2.0
    min_embedding_frames: int = 12  # model frames of solo speech for an embedding target to count
    gain_db: float = 6.0  # random per-chunk gain (the model removes the mean log energy; clipping stays)
    init_from: str | None = None  # a best.pt/last.pt of the same architecture, or a pretrained encoder
    workers: int = 1
    threads: int = 1
    max_chunks: int | None = None  # use only the first chunks of the pool (smoke)
    dev_files: int | None = None
    dev_thresholds: list[float] = field(default_factory=lambda: [round(0.2 + 0.05 * i, 2) for i in range(13)])

    @classmethod
    def load(cls, model_type: str, name: str, params: dict[str, Any] | None = None) -> DistillConfig:
        params = params or load_params()
        recipes = params.get("distill", {}).get(model_type, {})
        return cls(**resolve_recipe(recipes, name, f"distillation recipe for {model_type}"))


def _class_permutations() -> torch.Tensor:
    """``(6, 7)``: for each slot order, the powerset class each class becomes."""
    index = {frozenset(c): i for i, c in enumerate(CLASSES)}
    return torch.tensor([[index[frozenset(p[s] for s in c)] for c in CLASSES] for p in permutations()])


CLASS_PERMUTATIONS = _class_permutations()


def soft_pit_powerset_loss(logprobs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to soft powerset targets under the best slot order, per chunk.

    Args:
        logprobs: ``(B, T, 7)`` model powerset log-probabilities.
        targets: ``(B, T, 7)`` teacher powerset probabilities (rows sum to 1).
    """
    losses = torch.stack(
        [-(targets[..., perm] * logprobs).sum(-1).mean(1) for perm in CLASS_PERMUTATIONS], dim=1
    )  # (B, 6)
    return losses.min(dim=1).values.mean()


def pool_shards(dirs: list[Path]) -> list[Path]:
    """The complete shards of ``dirs``: each a pool (its ``shard-*`` folders) or one shard itself.

    Raises:
        FileNotFoundError: a directory holds no complete shard (the message says how to build one).
    """
    shards: list[Path] = []
    for d in dirs:
        found = (
            [d]
            if (d / "info.json").exists()
            else sorted(p for p in d.glob("shard-*") if (p / "info.json").exists())
        )
        if not found:
            raise FileNotFoundError(f"no complete shard in {d}: run `flywheel data distill-pool`")
        shards.extend(found)
    return shards


def crop_pool_frames(pool: ChunkConfig, chunk: ChunkConfig) -> int:
    """How many of the pool's frames one ``chunk`` crop covers (a partial last frame counts)."""
    return math.ceil(chunk.chunk_s / pool.frame_s - 1e-9)


def crop_chunk(
    audio: np.ndarray,
    frames: list[np.ndarray],
    pool: ChunkConfig,
    chunk: ChunkConfig,
    start_frame: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``chunk``'s crop of one pool chunk from pool frame ``start_frame``: its samples and each of
    ``frames`` (``(pool frames, ...)`` arrays on the pool's grid) repeated onto ``chunk``'s grid.

    Raises:
        ValueError: ``chunk`` is longer than the pool's chunks, its frames do not divide the pool's, or
            the crop runs past the pool chunk's end.
    """
    repeat = pool.frame_s / chunk.frame_s
    if chunk.chunk_s > pool.chunk_s + 1e-9 or abs(repeat - round(repeat)) > 1e-6:
        raise ValueError(f"cannot crop {chunk} out of pool chunks {pool}")
    needed = crop_pool_frames(pool, chunk)
    if not 0 <= start_frame <= pool.num_frames - needed:
        raise ValueError(f"crop start {start_frame} outside 0..{pool.num_frames - needed}")
    first = int(round(start_frame * pool.frame_s * SAMPLE_RATE))
    times = int(round(repeat))
    span = slice(start_frame, start_frame + needed)
    cropped = [np.repeat(f[span], times, axis=0)[: chunk.num_frames] for f in frames]
    return audio[first : first + chunk.num_samples], cropped


def pool_chunk_config(shard: Path) -> ChunkConfig:
    """The chunk grid a pool shard was written on (its ``info.json``)."""
    return ChunkConfig(**json.loads((shard / "info.json").read_text())["chunk"])


class PoolChunks(Dataset):
    """The pool as ``(features, labels, teacher, targets, embedded)`` items; shards are memory-mapped.

    ``targets`` are the CAM++ embeddings centred by the pool mean and L2-normalised. With ``chunk``
    shorter or finer than the pool's grid, each item is a random crop (:func:`crop_chunk`).
    """

    def __init__(
        self,
        pool_dir: Path | list[Path],
        features: FeatureConfig = FeatureConfig(),
        gain_db: float = 0.0,
        max_chunks: int | None = None,
        seed: int = 0,
        chunk: ChunkConfig | None = None,
    ):
        shards = pool_shards(pool_dir if isinstance(pool_dir, list) else [pool_dir])
        self.pool_chunk = pool_chunk_config(shards[0])
        if any(pool_chunk_config(s) != self.pool_chunk for s in shards[1:]):
            raise ValueError(f"pool shards on different chunk grids: {shards}")
        self.chunk = chunk if chunk is not None and chunk != self.pool_chunk else None
        # crop starts 0 .. crop_starts - 1 (pool frames)
        self.crop_starts = (
            self.pool_chunk.num_frames - crop_pool_frames(self.pool_chunk, chunk) + 1 if self.chunk else 0
        )
        self.shards = [{k: np.load(s / f"{k}.npy", mmap_mode="r") for k in SHARD_FILES} for s in shards]
        self.offsets = np.cumsum([0] + [len(s["audio"]) for s in self.shards])
        self.length = int(self.offsets[-1]) if max_chunks is None else min(int(self.offsets[-1]), max_chunks)
        self.features = features
        self.gain_db = gain_db
        self.seed = seed
        self.mean = self._embedding_mean()

    def _embedding_mean(self) -> np.ndarray:
        total, count = 0.0, 0
        for s in self.shards:
            ok = np.asarray(s["embedded"])
            e = np.asarray(s["embeddings"], dtype=np.float32)[ok]
            e /= np.linalg.norm(e, axis=1, keepdims=True) + 1e-8
            total, count = total + e.sum(axis=0), count + len(e)
        return (total / max(count, 1)).astype(np.float32)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        s = int(np.searchsorted(self.offsets, i, side="right")) - 1
        shard, j = self.shards[s], i - int(self.offsets[s])
        audio = shard["audio"][j].astype(np.float32) / 32767.0
        labels = np.array(shard["labels"][j], dtype=np.float32)
        teacher = np.array(shard["teacher"][j], dtype=np.float32)
        rng = np.random.default_rng((self.seed, i, torch.initial_seed() % 2**32))
        if self.chunk is not None:
            start = int(rng.integers(0, self.crop_starts))
            audio, (labels, teacher) = crop_chunk(
                audio, [labels, teacher], self.pool_chunk, self.chunk, start
            )
        if self.gain_db:
            audio = np.clip(audio * np.float32(10 ** (rng.uniform(-1, 1) * self.gain_db / 20)), -1, 1)
        emb = np.array(shard["embeddings"][j], dtype=np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-8
        targets = emb - self.mean
        targets /= np.linalg.norm(targets, axis=1, keepdims=True) + 1e-8
        return (
            torch.from_numpy(np.ascontiguousarray(model_input(audio, self.features))),
            torch.from_numpy(np.ascontiguousarray(labels)),
            torch.from_numpy(np.ascontiguousarray(teacher)),
            torch.from_numpy(targets.astype(np.float32)),
            torch.from_numpy(np.array(shard["embedded"][j], dtype=bool)),
        )


def distill_step(
    model: torch.nn.Module, batch: tuple[torch.Tensor, ...], cfg: DistillConfig
) -> dict[str, torch.Tensor]:
    """The three losses of one batch and their weighted sum (``loss``)."""
    feats, labels, teacher, targets, embedded = batch
    hidden = model.backbone(feats)
    logprobs = model.segment(hidden)
    hard, perm = pit_powerset_loss(logprobs, labels)
    soft = soft_pit_powerset_loss(logprobs, teacher)
    # the model's slot k is the labels' slot perm[k]: align labels and their embedding targets
    labels = torch.gather(labels, 2, perm[:, None, :].expand_as(labels))
    targets = torch.gather(targets, 1, perm[:, :, None].expand_as(targets))
    embedded = torch.gather(embedded, 1, perm)
    alone = labels * (labels.sum(dim=2, keepdim=True) == 1)
    embeddings = model.embed(hidden, alone)
    valid = embedded & (alone.sum(dim=1) >= cfg.min_embedding_frames)
    embed = (
        (1 - F.cosine_similarity(embeddings[valid], targets[valid], dim=-1)).mean()
        if valid.any()
        else embeddings.sum() * 0.0
    )
    loss = cfg.hard_weight * hard + cfg.soft_weight * soft + cfg.embed_weight * embed
    return {"loss": loss, "hard": hard, "soft": soft, "embed": embed}


def distill(
    model_type: str,
    name: str,
    out_dir: Path | None = None,
    params: dict[str, Any] | None = None,
    data_dir: Path | None = None,
    resume: bool = True,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """Run distillation recipe ``name`` for ``model_type``; returns the summary (also ``summary.json``).

    ``init_from`` (else the recipe's) starts a new run from a training checkpoint of the same
    architecture or, for DistilHuBERT, a local pretrained encoder (``ntu-spml/distilhubert`` layout).
    """
    from training.train import _save_best, dev_der, init_worker, load_pretrained_encoder, lr_at, new_run_state

    params = params or load_params()
    cfg = DistillConfig.load(model_type, name, params)
    init_from = init_from or cfg.init_from
    data_dir = data_dir or get_settings().data_dir
    out = Path(out_dir or Path("checkpoints") / model_type / name)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(params["seed"])
    chunk = ChunkConfig(**params["models"][model_type]["chunk"])
    features = FeatureConfig(**params["models"][model_type].get("features", {}))
    system_params = params.get("systems", {}).get(model_type, {})
    pools = [data_dir / p for p in ([cfg.pool] if isinstance(cfg.pool, str) else cfg.pool)]
    dataset = PoolChunks(pools, features, cfg.gain_db, cfg.max_chunks, params["seed"], chunk)
    dev_dir = data_dir / cfg.dev_set

    model = build_model(model_type, params, **cfg.architecture)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(dataset) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    state = new_run_state()
    last = out / "last.pt"
    if resume and last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        print(f"resumed from {last}: epoch {state['epoch']}, best dev DER {state['best_der']:.4f}")
    elif init_from and not load_pretrained_encoder(model, Path(init_from)):
        model.load_state_dict(torch.load(init_from, map_location="cpu", weights_only=False)["model"])
        print(f"initialised from {init_from}")
    print(
        f"{model_type} ({sum(p.numel() for p in model.parameters()):,} parameters), "
        f"{len(dataset)} pool chunks ({len(dataset) * chunk.chunk_s / 3600:.1f} h), dev {dev_dir}"
    )

    limit_blas_threads(1)
    started = time.perf_counter()
    while state["epoch"] < cfg.epochs and state["stale"] < cfg.patience:
        epoch = state["epoch"]
        generator = torch.Generator().manual_seed(params["seed"] + epoch)
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=cfg.workers,
            worker_init_fn=init_worker,
            drop_last=True,
            prefetch_factor=4 if cfg.workers else None,
        )
        model.train()
        sums: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        for i, batch in enumerate(bar):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state["step"], total, cfg)
            losses = distill_step(model, batch, cfg)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            state["step"] += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if i % 20 == 0:
                bar.set_postfix({k: f"{v / (i + 1):.3f}" for k, v in sums.items()})
        der, threshold = dev_der(
            model, dev_dir, chunk, cfg.dev_thresholds, cfg.dev_files, features, system_params
        )
        record = {
            "epoch": epoch + 1,
            "step": state["step"],
            **{(k if k == "loss" else f"{k}_loss"): v / max(1, steps_per_epoch) for k, v in sums.items()},
            "dev_der": float(der),
            "dev_threshold": threshold,
            "elapsed_s": time.perf_counter() - started,
        }
        state["history"].append(record)
        print(json.dumps(record), flush=True)
        state["epoch"] = epoch + 1
        if der < state["best_der"]:
            state.update(best_der=float(der), best_threshold=threshold, stale=0)
            _save_best(out / "best.pt", model, model_type, chunk, features, der, threshold, epoch + 1)
        else:
            state["stale"] += 1
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state}, last)

    summary = {
        "model_type": model_type,
        "recipe": name,
        "best_dev_der": state["best_der"],
        "best_threshold": state["best_threshold"],
        "dev_set": cfg.dev_set,
        "epochs": state["epoch"],
        "steps": state["step"],
        "history": state["history"],
        "checkpoint": str(out / "best.pt"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
