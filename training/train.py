"""Training loop shared by both arms (nanoGPT-style: one readable function plus helpers).

Per epoch: on-the-fly simulated conversations -> chunks -> PIT powerset loss + AAM speaker loss on the
local-speaker embeddings (pooled with the reference single-speaker frames); then dev DER with the full
diarization pipeline (threshold picked on a small grid). The best checkpoint by dev DER is kept,
training stops early after ``patience`` epochs without improvement, and ``last.pt`` resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from flywheel.config import get_settings, load_params, resolve_recipe
from flywheel.features import FeatureConfig, limit_blas_threads
from flywheel.systems.neural import NeuralDiarizer, NeuralParams
from flywheel.testset import iter_test_set
from pipelines.inventory import Inventory
from pipelines.simulate import SimulationConfig
from training.data import ChunkConfig, ConversationChunks, conversations_for_hours
from training.losses import AAMSoftmax, pit_powerset_loss
from training.models.registry import build_model
from training.teacher import load_teacher_targets
from training.train_tracking import finish_training, training_tracker


@dataclass
class TrainConfig:
    """One training recipe (params.yaml: ``train.<model>.<config>``)."""

    data_profile: str = "smoke"
    train_hours: float | None = None  # per epoch; default: the profile's train_hours
    epochs: int = 20
    patience: int = 3
    stop_after: int | None = None  # end after this many epochs; the lr schedule still spans `epochs`
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    speaker_loss_weight: float = 1.0
    distill_weight: float = 0.0  # cosine loss to the speaker's teacher d-vector (training/teacher.py)
    teacher: str | None = None  # teacher vectors, relative to the data directory (e.g. teacher/full.npz)
    init_from: str | None = None  # checkpoint (best.pt/last.pt) whose weights start this recipe
    # first data epoch (a continued recipe sees new conversations). None: right after the last one the
    # `init_from` checkpoint's weights were trained on (data_epoch_after), 0 without init_from
    data_epoch_offset: int | None = None
    # new voices: each conversation speaker is, with this probability, replaced by a copy with its
    # formants shifted by one of these factors, trained as a speaker of its own (pipelines/voice_warp.py)
    formant_warps: list[float] = field(default_factory=list)
    formant_warp_prob: float = 0.0
    # overrides of the architecture (params.yaml `models.<model>`), e.g. {dilations: [...]} with one
    # more block: a recipe that grows a model it is initialised from (`load_grown`)
    architecture: dict[str, Any] = field(default_factory=dict)
    # overrides of params.yaml `simulation` for the training conversations only (dev/test stay fixed),
    # e.g. {overlap_turn_prob: 0.5} for more overlapped speech
    simulation: dict[str, Any] = field(default_factory=dict)
    margin: float = 0.2  # AAM margin, reached after warm-up (0 first: AAM from scratch collapses)
    margin_warmup_steps: int = 600
    margin_ramp_steps: int = 900
    min_embedding_frames: int = 12  # slots with fewer single-speaker frames get no speaker loss
    workers: int = 1
    threads: int = 1
    coverage: float = 1.0
    dev_files: int | None = None  # limit dev files (smoke)
    # cosine-distance thresholds tried for dev DER: 0.2 to 0.8 by 0.025 (re-clustering is cheap)
    dev_thresholds: list[float] = field(
        default_factory=lambda: [round(0.2 + 0.025 * i, 3) for i in range(25)]
    )
    max_steps_per_epoch: int | None = None
    # dev DER from this epoch on (1: every epoch); earlier epochs are neither scored nor kept as best.
    # A long recipe that ends by averaging its last epochs saves a dev pass on each early epoch
    dev_from_epoch: int = 1
    # at the end, the weights of the last `average_last` epochs are averaged (kept in epochs/); the
    # average replaces best.pt when its dev DER is lower (0 or 1: no averaging)
    average_last: int = 0
    # overrides of params.yaml `models.<model>.chunk` (e.g. {chunk_s: 10.0}): train at another chunk
    # length; the checkpoint and its ONNX export carry it, so inference follows the model
    chunk: dict[str, Any] = field(default_factory=dict)
    # overrides of params.yaml `systems.<model>` for the dev DER (e.g. {step_s: 2.5} with 10 s chunks)
    dev_pipeline: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, model_type: str, name: str, params: dict[str, Any] | None = None) -> TrainConfig:
        params = params or load_params()
        return cls(**resolve_recipe(params["train"][model_type], name, f"training config for {model_type}"))


def training_simulation(params: dict[str, Any], cfg: TrainConfig) -> SimulationConfig:
    """How the recipe's training conversations are simulated: params.yaml ``simulation`` with the
    profile's durations, the recipe's formant-warped voices and its ``simulation`` overrides.

    Raises:
        ValueError: an override names no simulation setting.
    """
    durations = params["profiles"][cfg.data_profile]["conversations"]["duration_s"]
    sim = SimulationConfig.from_params(params["simulation"], duration_s=durations)
    unknown = sorted(set(cfg.simulation) - set(SimulationConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown simulation setting(s) {unknown} in the recipe's `simulation`")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.simulation.items()}
    return dataclasses.replace(
        sim, formant_warps=tuple(cfg.formant_warps), formant_warp_prob=cfg.formant_warp_prob, **overrides
    )


def init_worker(_: int) -> None:
    """DataLoader ``worker_init_fn``: one BLAS thread per data worker."""
    limit_blas_threads(1)


class TorchBackend:
    """Runs a torch model as a :data:`flywheel.systems.neural.Backend` (for dev DER during training)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @torch.no_grad()
    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logprobs, embeddings = self.model(torch.from_numpy(features))
        return logprobs.numpy(), embeddings.numpy()


def dev_der(
    model: torch.nn.Module,
    dev_dir: Path,
    chunk: ChunkConfig,
    thresholds: list[float],
    limit: int | None = None,
    features: FeatureConfig = FeatureConfig(),
    pipeline: dict[str, Any] | None = None,
) -> tuple[float, float]:
    """Best dev DER (collar 0, overlap scored) over ``thresholds``; returns ``(der, threshold)``.

    ``pipeline`` holds the served system's hyper-parameters (params.yaml ``systems.<model>``), so the
    checkpoint chosen is the one that is best as it will be served; its step is capped at half the
    chunk (the recipe may train at another chunk length than the system serves).
    """
    from flywheel.threshold_scan import score_thresholds

    model.eval()
    params = NeuralParams.from_dict(pipeline or {})
    params.step_s = min(float((pipeline or {}).get("step_s", chunk.chunk_s)), chunk.chunk_s / 2)
    diarizer = NeuralDiarizer(TorchBackend(model), chunk.chunk_s, chunk.frame_s, params, features)
    items = list(iter_test_set(dev_dir))[:limit]
    table = score_thresholds(diarizer, items, thresholds)
    return min((row["der"], row["threshold"]) for row in table)


def new_run_state() -> dict[str, Any]:
    """The progress a training run keeps in ``last.pt`` (epoch, step, best dev DER, history, patience)."""
    return {"epoch": 0, "step": 0, "best_der": math.inf, "best_threshold": None, "history": [], "stale": 0}


def lr_at(step: int, total: int, cfg: Any) -> float:
    """Linear warm-up over ``cfg.warmup_steps`` to ``cfg.lr``, then cosine down to 5 % of it at ``total``
    (any recipe with ``lr`` and ``warmup_steps``: :class:`TrainConfig`, ``DistillConfig``)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    model_type: str,
    config_name: str = "smoke",
    out_dir: str | Path | None = None,
    resume: bool = True,
    params: dict[str, Any] | None = None,
    data_dir: Path | None = None,
    track: bool = False,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """Train ``model_type`` with recipe ``config_name``; returns the summary (also ``summary.json``).

    ``init_from`` (overrides the recipe's): a training checkpoint of the same model, or for
    ``distilhubert`` a local pretrained encoder in the ``ntu-spml/distilhubert`` layout.

    ``track``: log the run to MLflow (params, per-epoch metrics, best model as ONNX); a no-op with a
    printed message when MLflow is unreachable (see :mod:`registry.tracking`).
    """
    params = params or load_params()
    cfg = TrainConfig.load(model_type, config_name, params)
    if init_from:
        cfg.init_from = str(init_from)
    data_dir = data_dir or get_settings().data_dir
    out = Path(out_dir or Path("checkpoints") / model_type / config_name)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(params["seed"])

    profile = params["profiles"][cfg.data_profile]
    inventory = Inventory.load(data_dir / "inventory" / cfg.data_profile)
    dev_dir = data_dir / "conversations" / cfg.data_profile / "dev"
    sim = training_simulation(params, cfg)
    chunk = ChunkConfig(**{**params["models"][model_type]["chunk"], **cfg.chunk})
    features = FeatureConfig(**params["models"][model_type].get("features", {}))
    # dev DER as the system is served (with the recipe's overrides)
    system_params = {**params.get("systems", {}).get(model_type, {}), **cfg.dev_pipeline}
    hours = cfg.train_hours or profile["train_hours"]
    dataset = ConversationChunks(
        inventory,
        sim,
        chunk,
        conversations_for_hours(hours, sim.duration_s),
        params["seed"],
        features=features,
        coverage=cfg.coverage,
    )

    model = build_model(model_type, params, **cfg.architecture)
    speaker_head = AAMSoftmax(model.cfg.embedding_dim, len(dataset.speaker_index), margin=0.0)
    if cfg.init_from and not (resume and (out / "last.pt").exists()):
        _init_weights(model, speaker_head, Path(cfg.init_from))
    teacher = None
    if cfg.distill_weight > 0:
        if cfg.formant_warps:
            raise ValueError("formant-warped speakers have no teacher vectors: set distill_weight to 0")
        if not cfg.teacher:
            raise ValueError("distill_weight > 0 needs `teacher` (run `flywheel data teacher` first)")
        teacher = torch.from_numpy(load_teacher_targets(data_dir / cfg.teacher, dataset.speaker_index))
    optimizer = torch.optim.AdamW(
        [*model.parameters(), *speaker_head.parameters()],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    est_steps = int(hours * 3600 * cfg.coverage / chunk.chunk_s / cfg.batch_size)
    if cfg.max_steps_per_epoch:
        est_steps = min(est_steps, cfg.max_steps_per_epoch)
    total_steps = est_steps * cfg.epochs

    state = new_run_state()
    last = out / "last.pt"
    if resume and last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        speaker_head.load_state_dict(ckpt["speaker_head"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        print(f"resumed from {last}: epoch {state['epoch']}, best dev DER {state['best_der']:.4f}")
    offset = cfg.data_epoch_offset = state["data_epoch_offset"] = first_data_epoch(cfg, state)

    tracker = training_tracker(
        track, model_type, config_name, cfg.__dict__, params, [inventory.root, dev_dir]
    )
    tracker.set_tags({"resumed_from_epoch": state["epoch"]})

    # persistent workers keep their audio cache; each pass over the loader advances their epoch
    dataset.set_epoch(state["epoch"] + offset)
    limit_blas_threads(1)
    loader = DataLoader(
        dataset,
        worker_init_fn=init_worker,
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers else None,
    )
    started = time.perf_counter()
    last_epoch = min(cfg.epochs, cfg.stop_after or cfg.epochs)
    while state["epoch"] < last_epoch and state["stale"] < cfg.patience:
        epoch = state["epoch"]
        losses = []
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", total=est_steps)
        for i, (feats, labels, speaker_ids) in enumerate(bar):
            if cfg.max_steps_per_epoch and i >= cfg.max_steps_per_epoch:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state["step"], total_steps, cfg)
            ramp = (state["step"] - cfg.margin_warmup_steps) / max(1, cfg.margin_ramp_steps)
            speaker_head.margin = cfg.margin * min(1.0, max(0.0, ramp))
            seg_loss, spk_loss, kd_loss = training_step(
                model, speaker_head, feats, labels, speaker_ids, cfg, teacher
            )
            loss = seg_loss + cfg.speaker_loss_weight * spk_loss + cfg.distill_weight * kd_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            state["step"] += 1
            losses.append((seg_loss.item(), spk_loss.item(), kd_loss.item()))
            if i % 10 == 0:
                seg_m, spk_m, kd_m = np.mean(losses[-50:], axis=0)
                bar.set_postfix(seg=f"{seg_m:.3f}", spk=f"{spk_m:.3f}", kd=f"{kd_m:.3f}")
        scored = epoch + 1 >= cfg.dev_from_epoch
        der, threshold = (
            dev_der(model, dev_dir, chunk, cfg.dev_thresholds, cfg.dev_files, features, system_params)
            if scored
            else (None, None)
        )
        seg_m, spk_m, kd_m = np.mean(losses, axis=0) if losses else (math.nan,) * 3
        record = {
            "epoch": epoch + 1,
            "step": state["step"],
            "seg_loss": float(seg_m),
            "spk_loss": float(spk_m),
            "distill_loss": float(kd_m),
            "dev_der": der,
            "dev_threshold": threshold,
            "elapsed_s": time.perf_counter() - started,
        }
        state["history"].append(record)
        print(json.dumps(record))
        skip = ("epoch", "step") if scored else ("epoch", "step", "dev_der", "dev_threshold")
        tracker.log_metrics({k: v for k, v in record.items() if k not in skip}, step=epoch + 1)
        state["epoch"] = epoch + 1
        state["data_epoch_next"] = offset + epoch + 1  # a recipe continuing these weights starts here
        if cfg.average_last > 1:
            (out / "epochs").mkdir(exist_ok=True)
            torch.save(model.state_dict(), _epoch_weights(out, epoch + 1))
        if scored and der < state["best_der"]:
            state.update(best_der=der, best_threshold=threshold, stale=0)
            _save_best(
                out / "best.pt",
                model,
                model_type,
                chunk,
                features,
                der,
                threshold,
                epoch + 1,
                data_epoch_next=state["data_epoch_next"],
            )
        elif scored:  # patience counts scored epochs only
            state["stale"] += 1
        torch.save(
            {
                "model": model.state_dict(),
                "speaker_head": speaker_head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "state": state,
            },
            last,
        )

    if cfg.average_last > 1 and "averaged" not in state:
        state["averaged"] = _average_last_epochs(
            model, out, state, cfg, model_type, chunk, features, dev_dir, system_params
        )
        # only the state changes: last.pt keeps the last epoch's weights (the model now holds others)
        torch.save({**torch.load(last, map_location="cpu", weights_only=False), "state": state}, last)

    summary = {
        "model_type": model_type,
        "config": config_name,
        "best_dev_der": state["best_der"],
        "best_threshold": state["best_threshold"],
        "epochs": state["epoch"],
        "steps": state["step"],
        "history": state["history"],
        "averaged": state.get("averaged"),
        "checkpoint": str(out / "best.pt"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    finish_training(tracker, summary, out, dev_dir)
    return summary


def _epoch_weights(out: Path, epoch: int) -> Path:
    return out / "epochs" / f"epoch_{epoch:03d}.pt"


def _save_best(
    path: Path,
    model: torch.nn.Module,
    model_type: str,
    chunk: ChunkConfig,
    features: FeatureConfig,
    der: float,
    threshold: float | None,
    epoch: int,
    averaged_epochs: list[int] | None = None,
    data_epoch_next: int | None = None,
) -> None:
    """Write ``best.pt``: the weights plus what export and serving need to rebuild the model, and
    (``data_epoch_next``) the data epoch right after the last one these weights were trained on."""
    torch.save(
        {
            "model": model.state_dict(),
            "model_type": model_type,
            "config": model.cfg.as_dict(),
            "chunk": chunk.__dict__,
            "features": features.__dict__,
            "dev_der": der,
            "threshold": threshold,
            "epoch": epoch,
            "averaged_epochs": averaged_epochs,
            **({"data_epoch_next": data_epoch_next} if data_epoch_next is not None else {}),
        },
        path,
    )


def first_data_epoch(cfg: TrainConfig, state: dict[str, Any]) -> int:
    """The data epoch the run's first epoch trains on: the recipe's explicit ``data_epoch_offset``;
    else the one a resumed run (``state`` from its ``last.pt``) started with; else right after the
    last one the ``init_from`` checkpoint was trained on (:func:`data_epoch_after`); else 0."""
    if cfg.data_epoch_offset is not None:
        return cfg.data_epoch_offset
    if state.get("data_epoch_offset") is not None:
        return int(state["data_epoch_offset"])
    return data_epoch_after(cfg.init_from) if cfg.init_from else 0


def _recorded_data_epoch_next(ckpt: dict[str, Any]) -> int | None:
    """``data_epoch_next`` as a checkpoint records it: at the top in ``best.pt``, in ``last.pt``'s
    ``state``; ``None`` when it does not (saved before the field existed, or by ``flywheel distill``)."""
    value = ckpt.get("data_epoch_next")
    state = ckpt.get("state")
    if value is None and isinstance(state, dict):
        value = state.get("data_epoch_next")
    return None if value is None else int(value)


def data_epoch_after(path: str | Path) -> int:
    """The data epoch a recipe continuing checkpoint ``path`` starts at: right after the last one its
    weights were trained on, so the continued run sees new conversations.

    ``best.pt`` and ``last.pt`` record it (``data_epoch_next``). A checkpoint saved before they did
    falls back to the number of epochs it had trained (``best.pt``'s ``epoch``, ``last.pt``'s
    ``state["epoch"]``: both count epochs done, the first epoch is 1), i.e. it assumes that run started
    at data epoch 0; a note says so. A pretrained encoder (a directory, ``.safetensors``, ``.bin``)
    never saw these conversations: 0.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the checkpoint records neither (e.g. an average of checkpoints saved before the
            field existed): the recipe has to set ``data_epoch_offset``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"init_from {path} not found")
    if path.is_dir() or path.suffix in (".safetensors", ".bin"):
        return 0
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    recorded = _recorded_data_epoch_next(ckpt)
    if recorded is not None:
        print(f"data epochs from {recorded}: right after those {path} was trained on")
        return recorded
    state = ckpt.get("state")
    done = state.get("epoch") if isinstance(state, dict) else ckpt.get("epoch")
    if not isinstance(done, int):
        raise ValueError(
            f"{path} records neither data_epoch_next nor its epoch: set data_epoch_offset in the recipe"
        )
    print(
        f"note: {path} does not record data_epoch_next; data epochs from {done} (its {done} epochs, "
        "assuming its run started at data epoch 0; set data_epoch_offset in the recipe otherwise)"
    )
    return done


def average_weights(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of model state dicts (integer buffers, e.g. batch counts, from the last)."""
    averaged = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            averaged[k] = (sum(s[k].double() for s in states) / len(states)).to(v.dtype)
        else:
            averaged[k] = states[-1][k]
    return averaged


def _grow_to(target: dict[str, Any], ckpt: dict[str, Any]) -> None:
    """Give ``ckpt`` the depth of ``target`` in place when it is the same model with fewer trailing
    blocks; otherwise leave it alone.

    The missing blocks become identity (``FastCNN.load_grown``) made of ``target``'s own block weights
    with the last projection zeroed, so the mean of the two is ``target``'s block at half strength
    rather than a blend with random weights.
    """
    own, theirs = set(target["model"]), set(ckpt["model"])
    if ckpt.get("model_type") != target.get("model_type") or not theirs < own:
        return
    model = build_model(target["model_type"], **target["config"])
    if not hasattr(model, "load_grown"):
        return
    try:
        new_blocks = model.load_grown(ckpt["model"])
    except (ValueError, RuntimeError):
        return  # not a shallower copy: the shape check in average_checkpoints refuses it
    grown = model.state_dict()
    for key in own - theirs:
        if any(key.startswith(f"blocks.{i}.") for i in new_blocks) and ".pw2." not in key:
            grown[key] = target["model"][key].clone()
    ckpt["model"] = grown


def average_checkpoints(paths: list[Path], out: Path) -> dict[str, Any]:
    """Write the mean weights of ``best.pt``-style checkpoints of one architecture to ``out``
    (a "model soup", e.g. two recipes that continue one model); the rest (config, chunk, features)
    comes from the first. A Fast CNN with fewer residual blocks than the first is grown to its depth
    first (the missing blocks as identity), so a grown run can be averaged with the model it grew
    from. Returns the written checkpoint.

    Raises:
        ValueError: fewer than two checkpoints, or their model types or weight shapes differ.
    """
    if len(paths) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    ckpts = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    first = ckpts[0]
    for ckpt in ckpts[1:]:
        _grow_to(first, ckpt)

    def signature(ckpt: dict[str, Any]) -> tuple[str, dict[str, tuple[int, ...]]]:
        return ckpt["model_type"], {k: tuple(v.shape) for k, v in ckpt["model"].items()}

    for path, ckpt in zip(paths[1:], ckpts[1:], strict=True):
        if signature(ckpt) != signature(first):
            raise ValueError(f"{path} is not the architecture of {paths[0]}: cannot average their weights")
    # a recipe continuing the soup starts after the data of every ingredient (when they all record it)
    recorded = [n for n in map(_recorded_data_epoch_next, ckpts) if n is not None]
    soup = {
        **{k: v for k, v in first.items() if k not in ("model", "dev_der", "threshold", "epoch")},
        "model": average_weights([c["model"] for c in ckpts]),
        "dev_der": None,
        "threshold": None,
        "epoch": None,
        "averaged_epochs": None,
        "averaged_checkpoints": [str(p) for p in paths],
        "data_epoch_next": max(recorded) if len(recorded) == len(ckpts) else None,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(soup, out)
    return soup


def _average_last_epochs(
    model: torch.nn.Module,
    out: Path,
    state: dict[str, Any],
    cfg: TrainConfig,
    model_type: str,
    chunk: ChunkConfig,
    features: FeatureConfig,
    dev_dir: Path,
    system_params: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Average the weights of the last ``cfg.average_last`` epochs and keep them as ``best.pt`` when
    their dev DER beats the best single epoch's, both scored now on the same dev set. Returns the
    record (``None``: too few epochs kept)."""
    last = state["epoch"]
    epochs = list(range(last - cfg.average_last + 1, last + 1))
    paths = [_epoch_weights(out, e) for e in epochs]
    if epochs[0] < 1 or not all(p.exists() for p in paths):
        print(f"weight averaging skipped: epochs {epochs[0]}-{last} are not all kept in {out / 'epochs'}")
        return None

    def score() -> tuple[float, float]:
        return dev_der(model, dev_dir, chunk, cfg.dev_thresholds, cfg.dev_files, features, system_params)

    best_path = out / "best.pt"
    if best_path.exists():  # scored again: the dev set may have changed since that epoch
        model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=False)["model"])
        state["best_der"], state["best_threshold"] = score()
    model.load_state_dict(average_weights([torch.load(p, map_location="cpu") for p in paths]))
    der, threshold = score()
    record = {
        "averaged_epochs": [epochs[0], last],
        "dev_der": der,
        "dev_threshold": threshold,
        "best_epoch_dev_der": state["best_der"],
    }
    print(json.dumps(record))
    if der < state["best_der"]:
        state.update(best_der=der, best_threshold=threshold)
        _save_best(
            best_path,
            model,
            model_type,
            chunk,
            features,
            der,
            threshold,
            last,
            epochs,
            data_epoch_next=state["data_epoch_offset"] + last,
        )
    return record


def training_step(
    model: torch.nn.Module,
    speaker_head: AAMSoftmax,
    feats: torch.Tensor,
    labels: torch.Tensor,
    speaker_ids: torch.Tensor,
    cfg: TrainConfig,
    teacher: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Segmentation (PIT powerset), speaker (AAM) and distillation losses for one batch.

    The speaker loss pools each local speaker over its reference single-speaker frames.

    ``teacher``: ``(num_speakers, D)`` centred unit teacher vectors; the distillation loss is the mean
    cosine distance between each valid local-speaker embedding and its speaker's teacher vector
    (zero without a teacher).
    """
    hidden = model.backbone(feats)
    logprobs = model.segment(hidden)
    seg_loss, perm = pit_powerset_loss(logprobs, labels)
    # align slots with the permutation the segmentation loss chose
    labels = torch.gather(labels, 2, perm[:, None, :].expand_as(labels))
    speaker_ids = torch.gather(speaker_ids, 1, perm)
    alone = labels * (labels.sum(dim=2, keepdim=True) == 1)  # (B, T, 3) single-speaker frames
    embeddings = model.embed(hidden, alone)
    valid = (alone.sum(dim=1) >= cfg.min_embedding_frames) & (speaker_ids >= 0)
    zero = embeddings.sum() * 0.0
    if not valid.any():
        return seg_loss, zero, zero
    spk_loss = speaker_head(embeddings[valid], speaker_ids[valid])
    kd_loss = zero
    if teacher is not None:
        targets = teacher[speaker_ids[valid]]
        kd_loss = (1 - torch.nn.functional.cosine_similarity(embeddings[valid], targets, dim=-1)).mean()
    return seg_loss, spk_loss, kd_loss


def load_pretrained_encoder(model: torch.nn.Module, path: Path) -> bool:
    """Load a pretrained encoder (a Hugging Face directory, ``.safetensors`` or ``.bin``) into a model
    whose module has a ``load_pretrained`` (DistilHuBERT); False when ``path`` is a training checkpoint.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the model cannot load pretrained encoder weights.
    """
    if not path.exists():
        raise FileNotFoundError(f"init_from {path} not found")
    if not (path.is_dir() or path.suffix in (".safetensors", ".bin")):
        return False
    module = sys.modules[type(model).__module__]
    if not hasattr(module, "load_pretrained"):
        raise ValueError(f"{type(model).__name__} cannot load pretrained encoder weights from {path}")
    missing = module.load_pretrained(model, path)
    print(f"pretrained encoder from {path}" + (f" ({len(missing)} tensors left random)" if missing else ""))
    return True


def _init_weights(model: torch.nn.Module, speaker_head: AAMSoftmax, path: Path) -> None:
    """Start from the weights of another run (its speaker head too when the speaker set matches; a
    Fast CNN with more blocks grows from a smaller one, see ``FastCNN.load_grown``), or
    from a pretrained encoder (a Hugging Face directory, ``.safetensors`` or ``.bin``) for models that
    have a ``load_pretrained`` (DistilHuBERT)."""
    if load_pretrained_encoder(model, path):
        return
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    grown = ""
    if set(ckpt["model"]) < set(model.state_dict()) and hasattr(model, "load_grown"):
        new_blocks = model.load_grown(ckpt["model"])
        grown = f", new blocks {new_blocks} start as identity" if new_blocks else ""
    else:
        model.load_state_dict(ckpt["model"])
    head = ckpt.get("speaker_head")
    kept = head is not None and head["weight"].shape == speaker_head.weight.shape
    if kept:
        speaker_head.load_state_dict(head)
    print(f"initialised from {path} (speaker head {'kept' if kept else 'new'}{grown})")
