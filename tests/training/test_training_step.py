"""The training step: its three losses, and the speaker loss with pooling as at inference."""

import torch

from training.losses import AAMSoftmax, pit_powerset_loss
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


def test_predicted_pooling_adds_the_loss_of_the_inference_embeddings(params: dict) -> None:
    """`predicted_pool_weight` adds the speaker loss of exactly the embeddings `forward` serves."""
    torch.manual_seed(0)
    model = build_model("fast-cnn", params).eval()  # eval: BatchNorm gives the same output each call
    head = AAMSoftmax(model.cfg.embedding_dim, 4)
    feats, labels, ids = two_speaker_batch()
    _, plain, _ = training_step(model, head, feats, labels, ids, TrainConfig())
    _, both, _ = training_step(model, head, feats, labels, ids, TrainConfig(predicted_pool_weight=0.5))
    assert both.item() > plain.item()
    # the added term: the PIT permutation maps labels onto the model's slots
    with torch.no_grad():
        logprobs, served = model(feats)
        _, perm = pit_powerset_loss(logprobs, labels)
        aligned_ids = torch.gather(ids, 1, perm)
        valid = aligned_ids >= 0
        expected = head(served[valid], aligned_ids[valid])
    assert torch.isclose(both - plain, 0.5 * expected, rtol=1e-4, atol=1e-5)


def test_frozen_segmentation_trains_only_the_embedding_head(params: dict) -> None:
    """`freeze_segmentation`: one optimiser step moves the embedding head and nothing else, batch-norm
    statistics of the frozen part included, so the segmentation output stays bit-identical."""
    from training.train import EMBEDDING_HEAD, freeze_segmentation, set_train_mode

    torch.manual_seed(0)
    model = build_model("fast-cnn", params)
    cfg = TrainConfig(freeze_segmentation=True)
    trainable = freeze_segmentation(model)
    head_params = sum(p.numel() for n, p in model.named_parameters() if n.split(".")[0] in EMBEDDING_HEAD)
    assert trainable == head_params > 0
    head = AAMSoftmax(model.cfg.embedding_dim, 4)
    feats, labels, ids = two_speaker_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    set_train_mode(model, cfg)
    seg, spk, _ = training_step(model, head, feats, labels, ids, cfg)
    assert not seg.requires_grad and spk.requires_grad
    (seg + spk).backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(before[k], after[k])}
    assert changed and changed <= set(EMBEDDING_HEAD)
