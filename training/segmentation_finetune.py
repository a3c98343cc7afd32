"""Fine-tune segmentation-3.0 on exact labels (runs in ``.venv-teacher``: pyannote.audio's PyanNet).

The pool comes from :mod:`training.segmentation_pool` (10 s windows, labels on the model's own
frames). The loss is pyannote's: the powerset cross-entropy against the reference permuted to the
local speaker order that fits the prediction best (over the 6 permutations of 3 slots, chosen by the
binary cross-entropy of the predicted per-speaker activity); frames where three speakers talk have no
powerset class and are left out. Small learning rate, all weights trained, dropout as shipped.

A checkpoint (weights + optimiser + step, ~18 MB) is written every ``--save-every`` steps to
``<out>/last.pt`` and the run resumes from it. Export the result for the teacher with
``python -m training.teacher_export --segmentation-weights <out>/last.pt --out <folder>``::

    .venv-teacher/bin/python -m training.segmentation_finetune --steps 600 --out checkpoints/teacher-seg
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import typer

from training.teacher_export import load_segmentation

# powerset class of a (spk1, spk2, spk3) activity pattern, by code s1 + 2 s2 + 4 s3 (pyannote's
# Powerset(3, 2) order: {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}); -1: three speakers, no class
CLASS_OF_CODE = torch.tensor([0, 1, 2, 4, 3, 5, 6, -1])
MAPPING = torch.tensor(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=torch.float32
)
PERMUTATIONS = list(itertools.permutations(range(3)))


def powerset_loss(logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Permutation-invariant powerset NLL of ``logprobs (B, F, 7)`` against ``labels (B, F, 3)``."""
    activity = logprobs.exp() @ MAPPING  # (B, F, 3) predicted probability that each slot speaks
    costs = torch.stack(
        [
            F.binary_cross_entropy(
                activity.clamp(1e-6, 1 - 1e-6), labels[..., list(p)], reduction="none"
            ).mean(dim=(1, 2))
            for p in PERMUTATIONS
        ],
        dim=1,
    )  # (B, 6)
    best = costs.argmin(dim=1)
    permuted = torch.stack([labels[b][:, list(PERMUTATIONS[int(best[b])])] for b in range(len(labels))])
    codes = (permuted * torch.tensor([1.0, 2.0, 4.0])).sum(-1).long()
    target = CLASS_OF_CODE[codes]
    keep = target >= 0
    return F.nll_loss(logprobs[keep], target[keep])


class Pool:
    """All shards' windows (int16 audio, uint8 labels), memory-mapped."""

    def __init__(self, root: Path):
        shards = sorted(p.parent for p in root.glob("shard-*/info.json"))
        if not shards:
            raise FileNotFoundError(f"no shard in {root}: run `python -m training.segmentation_pool`")
        self.audio = [np.load(s / "audio.npy", mmap_mode="r") for s in shards]
        self.labels = [np.load(s / "labels.npy", mmap_mode="r") for s in shards]
        self.index = [(s, i) for s, a in enumerate(self.audio) for i in range(len(a))]

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(waveforms (B, 1, 160000) float, labels (B, 589, 3) float)``."""
        picked = [self.index[j] for j in ids]
        audio = np.stack([self.audio[s][i] for s, i in picked]).astype(np.float32) / 32767
        labels = np.stack([self.labels[s][i] for s, i in picked]).astype(np.float32)
        return torch.from_numpy(audio)[:, None], torch.from_numpy(labels)


def main(
    pool: Path = typer.Option(Path("data/segmentation/pool"), help="Shards from training.segmentation_pool."),
    out: Path = typer.Option(Path("checkpoints/teacher-seg"), help="Folder for last.pt and the log."),
    steps: int = typer.Option(600, help="Optimiser steps in all (the run resumes to this)."),
    batch_size: int = typer.Option(16, help="Windows per step."),
    lr: float = typer.Option(1e-4, help="Peak learning rate (AdamW; linear warm-up, cosine decay)."),
    warmup: int = typer.Option(30, help="Warm-up steps."),
    save_every: int = typer.Option(50, help="Write last.pt every this many steps."),
    threads: int = typer.Option(2, help="torch threads."),
    seed: int = typer.Option(0, help="Batch order seed."),
    anchor_weight: float = typer.Option(
        0.0, help="Weight of KL(pretrained || fine-tuned) on the same windows: keeps what it knew."
    ),
    freeze_sincnet: bool = typer.Option(False, help="Keep the SincNet front end as pretrained."),
) -> None:
    """Fine-tune segmentation-3.0 on the pool's exact labels; resumable."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data = Pool(pool)
    model = load_segmentation().train()
    anchor = load_segmentation().eval() if anchor_weight > 0 else None
    if freeze_sincnet:
        for param in model.sincnet.parameters():
            param.requires_grad_(False)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=lr, weight_decay=1e-2)
    out.mkdir(parents=True, exist_ok=True)
    step = 0
    if (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        typer.echo(f"resumed at step {step}")

    def rate(s: int) -> float:
        if s < warmup:
            return lr * (s + 1) / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))

    log = (out / "train.log").open("a")
    started, recent = time.time(), []
    while step < steps:
        rng = np.random.default_rng((seed, step))
        ids = rng.choice(len(data), size=batch_size, replace=False)
        waveforms, labels = data.batch(ids)
        for group in opt.param_groups:
            group["lr"] = rate(step)
        logprobs = model(waveforms)
        loss = powerset_loss(logprobs, labels)
        if anchor is not None:
            with torch.no_grad():
                reference = anchor(waveforms)
            # the powerset classes are the same local speakers in both (same input, same start)
            kl = (reference.exp() * (reference - logprobs)).sum(-1).mean()
            loss = loss + anchor_weight * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        recent.append(float(loss.detach()))
        if step % 10 == 0:
            line = {
                "step": step,
                "loss": float(np.mean(recent)),
                "lr": rate(step),
                "s": round(time.time() - started),
            }
            log.write(json.dumps(line) + "\n")
            log.flush()
            typer.echo(json.dumps(line))
            recent = []
        if step % save_every == 0 or step == steps:
            torch.save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, out / "tmp.pt"
            )
            (out / "tmp.pt").replace(out / "last.pt")


if __name__ == "__main__":
    typer.run(main)
