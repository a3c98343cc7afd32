"""Distillation from the teacher: the pool (teacher targets cached per chunk), its losses, one epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from distilhubert_fixtures import TINY

from flywheel.pretrained import CAMPPLUS_ONNX, SEGMENTATION_ONNX
from pipelines.background_noise import FILLETS_DIR, BackgroundConfig, NoiseBank
from training.distill import CLASS_PERMUTATIONS, DistillConfig, distill_step, soft_pit_powerset_loss
from training.distill_pool import grid_average_matrix, solo_fbank_frames
from training.losses import pit_powerset_loss
from training.models.powerset import multilabel_to_powerset
from training.models.registry import build_model

needs_teacher = pytest.mark.skipif(
    not (SEGMENTATION_ONNX.exists() and CAMPPLUS_ONNX.exists()),
    reason="models/teacher/*.onnx missing: run `bash scripts/setup_teacher.sh`",
)
needs_fillets = pytest.mark.skipif(
    not (FILLETS_DIR / "music").is_dir(),
    reason="fillets-ng-data missing: `bash pipelines/install_packages.sh`",
)


def test_grid_average_matrix_maps_teacher_frames_onto_the_40ms_grid() -> None:
    m = grid_average_matrix(593, 0.016875, 250, 0.04)
    assert m.shape == (250, 593)
    assert np.allclose(m.sum(axis=1), 1.0)
    # a teacher frame centred at 1.0 s belongs to grid frame 25 only
    j = int(1.0 / 0.016875)
    assert m[int(((j + 0.5) * 0.016875) / 0.04), j] > 0 and m[:, j].astype(bool).sum() == 1


def test_solo_fbank_frames_follow_the_labels() -> None:
    labels = np.zeros((125, 3), dtype=np.float32)
    labels[:50, 0] = 1  # speaker 0 alone for 2 s
    labels[40:80, 1] = 1  # overlaps speaker 0 for 0.4 s, then alone
    solo = solo_fbank_frames(labels, 80000, 0.04)
    assert solo.shape == (498, 3)
    assert 150 <= solo[:, 0].sum() <= 170  # ~1.6 s of 10 ms frames
    assert not (solo[:, 0] & solo[:, 1]).any() and solo[:, 2].sum() == 0


def test_soft_pit_loss_ignores_the_teachers_slot_order() -> None:
    torch.manual_seed(0)
    logprobs = torch.log_softmax(torch.randn(4, 30, 7), dim=-1)
    targets = torch.softmax(torch.randn(4, 30, 7) * 3, dim=-1)
    base = soft_pit_powerset_loss(logprobs, targets)
    for perm in CLASS_PERMUTATIONS:
        assert torch.isclose(soft_pit_powerset_loss(logprobs, targets[..., perm]), base)


def test_soft_pit_loss_on_one_hot_targets_is_the_hard_loss() -> None:
    torch.manual_seed(1)
    labels = (torch.rand(3, 40, 3) > 0.6).float()
    labels[..., 2] *= 1 - labels[..., 0] * labels[..., 1]  # at most two at once
    logprobs = torch.log_softmax(torch.randn(3, 40, 7), dim=-1)
    one_hot = torch.nn.functional.one_hot(multilabel_to_powerset(labels), 7).float()
    hard, _ = pit_powerset_loss(logprobs, labels)
    assert torch.isclose(soft_pit_powerset_loss(logprobs, one_hot), hard, atol=1e-5)


def test_distill_step_aligns_embedding_targets_with_the_label_slots(params: dict) -> None:
    torch.manual_seed(2)
    model = build_model(
        "fast-cnn",
        params,
        embedding_dim=192,
        channels=32,
        stem_channels=32,
        embedding_hidden=64,
        dilations=(1, 2),
    )
    feats = torch.randn(2, 64, 500)
    labels = torch.zeros(2, 125, 3)
    labels[:, :60, 0] = 1
    labels[:, 70:, 1] = 1
    teacher = torch.softmax(torch.randn(2, 125, 7), dim=-1)
    targets = torch.nn.functional.normalize(torch.randn(2, 3, 192), dim=-1)
    embedded = torch.tensor([[True, True, False], [True, False, False]])
    cfg = DistillConfig()
    losses = distill_step(model, (feats, labels, teacher, targets, embedded), cfg)
    assert set(losses) == {"loss", "hard", "soft", "embed"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert model.emb_mlp[0].weight.grad.abs().sum() > 0
    # nothing embedded: no embedding loss, the rest still trains
    none = distill_step(model, (feats, labels, teacher, targets, torch.zeros(2, 3, dtype=bool)), cfg)
    assert float(none["embed"].detach()) == 0.0 and float(none["hard"].detach()) > 0


@needs_fillets
def test_noise_bank_mixes_real_backgrounds_at_the_drawn_snr() -> None:
    bank = NoiseBank(cfg=BackgroundConfig(music_prob=1.0, effects_prob=0.0, music_snr_db=(10.0, 10.0)))
    speech = (np.random.default_rng(0).standard_normal(160000) * 0.05).astype(np.float32)
    mixed, info = bank.mix(np.random.default_rng(1), speech)
    noise = mixed - speech
    snr = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
    assert info["music_snr_db"] == 10.0 and abs(snr - 10.0) < 0.1
    quiet = NoiseBank(cfg=BackgroundConfig(music_prob=0.0, effects_prob=0.0))
    assert np.array_equal(quiet.mix(np.random.default_rng(1), speech)[0], speech)


@pytest.fixture(scope="module")
def smoke_pool(smoke_data: Path, params: dict) -> Path:
    if not (SEGMENTATION_ONNX.exists() and CAMPPLUS_ONNX.exists()):
        pytest.skip("models/teacher/*.onnx missing: run `bash scripts/setup_teacher.sh`")
    if not (FILLETS_DIR / "music").is_dir():
        pytest.skip("fillets-ng-data missing: `bash pipelines/install_packages.sh`")
    from training.distill_pool import build_pool

    build_pool("smoke", params, smoke_data)
    return smoke_data / "distill" / "smoke"


@needs_teacher
def test_pool_holds_exact_labels_teacher_posteriors_and_campp_targets(smoke_pool: Path) -> None:
    manifest = json.loads((smoke_pool / "pool.json").read_text())
    assert manifest["shards"][0]["chunks"] > 0
    shard = smoke_pool / "shard-000"
    audio, labels = np.load(shard / "audio.npy"), np.load(shard / "labels.npy")
    teacher, emb, ok = (np.load(shard / f"{k}.npy") for k in ("teacher", "embeddings", "embedded"))
    n = len(audio)
    assert audio.shape == (n, 80000) and audio.dtype == np.int16
    assert labels.shape == (n, 125, 3) and teacher.shape == (n, 125, 7) and emb.shape == (n, 3, 192)
    assert np.allclose(teacher.astype(np.float32).sum(-1), 1.0, atol=1e-2)
    assert ok.any() and np.all(np.linalg.norm(emb[~ok].astype(np.float32), axis=-1) == 0)
    # the teacher hears speech where the simulator placed it (clean smoke voices)
    speech = labels.sum(-1) > 0
    assert ((teacher[..., 0] < 0.5) == speech).mean() > 0.8
    # a target exists only for a slot with at least 0.5 s of solo speech
    solo = (labels * (labels.sum(-1, keepdims=True) == 1)).sum(1)
    assert np.all(solo[ok] >= 12)


@needs_teacher
def test_one_distillation_epoch_selects_on_dev_and_resumes(
    smoke_pool: Path, smoke_data: Path, params: dict, tmp_path: Path
) -> None:
    from training.distill import distill

    out = tmp_path / "ckpt"
    summary = distill("fast-cnn", "smoke", out, params=params, data_dir=smoke_data, resume=False)
    assert summary["epochs"] == 1 and 0.0 <= summary["best_dev_der"] <= 2.0
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert best["config"]["embedding_dim"] == 192 and best["threshold"] == 0.5
    again = distill("fast-cnn", "smoke", out, params=params, data_dir=smoke_data, resume=True)
    assert again["steps"] == summary["steps"]  # nothing left to do: resumed at the end


@needs_teacher
def test_a_pool_can_mix_directories_and_single_shards(smoke_pool: Path, tmp_path: Path) -> None:
    from training.distill import PoolChunks, pool_shards

    shard = smoke_pool / "shard-000"
    assert pool_shards([smoke_pool]) == [shard]
    assert pool_shards([smoke_pool, shard]) == [shard, shard]
    mixed = PoolChunks([smoke_pool, shard])
    assert len(mixed) == 2 * len(PoolChunks(smoke_pool))
    with pytest.raises(FileNotFoundError, match="distill-pool"):
        pool_shards([tmp_path])


def test_crop_chunk_repeats_pool_frames_onto_a_finer_grid() -> None:
    from training.data import ChunkConfig
    from training.distill import crop_chunk

    pool, arm = ChunkConfig(5.0, 0.04), ChunkConfig(1.5, 0.02)
    audio = np.arange(80000, dtype=np.float32)
    frames = np.arange(125, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    crop, (labels,) = crop_chunk(audio, [frames], pool, arm, start_frame=10)
    assert crop.shape == (24000,) and crop[0] == 10 * 640  # 40 ms frames of 640 samples
    assert labels.shape == (75, 3)
    # 20 ms frame k lies inside 40 ms pool frame 10 + k // 2
    assert np.array_equal(labels[:, 0], 10 + np.arange(75) // 2)
    last = 125 - 38  # 1.5 s needs 38 pool frames
    assert crop_chunk(audio, [frames], pool, arm, start_frame=last)[0].shape == (24000,)
    with pytest.raises(ValueError, match="outside"):
        crop_chunk(audio, [frames], pool, arm, start_frame=last + 1)
    with pytest.raises(ValueError, match="cannot crop"):
        crop_chunk(audio, [frames], arm, pool, start_frame=0)


@needs_teacher
def test_distilhubert_distils_on_crops_of_the_pool_from_a_pretrained_encoder(
    smoke_pool: Path, smoke_data: Path, params: dict, tmp_path: Path, pretrained_dir: Path
) -> None:
    import copy

    from transformers import HubertModel

    from flywheel.features import FeatureConfig
    from training.data import ChunkConfig
    from training.distill import PoolChunks, distill

    arm = params["models"]["distilhubert"]
    crops = PoolChunks(smoke_pool, FeatureConfig(**arm["features"]), chunk=ChunkConfig(**arm["chunk"]))
    audio, labels, teacher, targets, embedded = crops[0]
    assert audio.shape == (24000,) and labels.shape == (75, 3) and teacher.shape == (75, 7)
    assert targets.shape == (3, 192) and embedded.shape == (3,)
    assert torch.allclose(teacher.sum(-1), torch.ones(75), atol=1e-2)

    tiny = copy.deepcopy(params)
    tiny["models"]["distilhubert"].update(TINY)
    encoder = HubertModel.from_pretrained(pretrained_dir, local_files_only=True)
    out = tmp_path / "hubert"
    summary = distill(
        "distilhubert", "smoke", out, params=tiny, data_dir=smoke_data, resume=False, init_from=pretrained_dir
    )
    assert summary["epochs"] == 1 and summary["steps"] == 4  # 16 crops in batches of 4
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert best["model_type"] == "distilhubert" and best["config"]["embedding_dim"] == 192  # CAM++'s
    key = "feature_extractor.conv_layers.1.conv.weight"
    moved = (best["model"][f"hubert.{key}"] - encoder.state_dict()[key]).abs().max()
    assert moved < 0.01  # 4 small steps away from the pretrained encoder, not a random start
