"""The training step: its three losses."""

import torch

from training.losses import AAMSoftmax
from training.models.registry import build_model
from training.train import TrainConfig, training_step


def two_speaker_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two 5 s chunks: local speaker 0 then 1 (no overlap), slot 2 silent; speaker ids per slot."""
    feats = torch.randn(2, 64, 500)
    labels = torch.zeros(2, 125, 3)
    labels[:, :60, 0] = 1
    labels[:, 60:, 1] = 1
    ids = torch.tensor([[0, 1, -1], [2, 3, -1]])
    return feats, labels, ids


def test_training_step_returns_three_losses(params: dict) -> None:
    model = build_model("fast-cnn", params)
    head = AAMSoftmax(model.cfg.embedding_dim, 5)
    feats, labels, ids = two_speaker_batch()
    teacher = torch.nn.functional.normalize(torch.randn(5, model.cfg.embedding_dim), dim=-1)
    seg, spk, kd = training_step(model, head, feats, labels, ids, TrainConfig(), teacher)
    assert seg.item() > 0 and spk.item() > 0 and 0 < kd.item() <= 2
    _, _, none = training_step(model, head, feats, labels, ids, TrainConfig(), None)
    assert none.item() == 0.0
