"""The training step's speaker loss, with and without pooling as at inference."""

import torch

from training.losses import AAMSoftmax
from training.models.registry import build_model
from training.train import TrainConfig, training_step


def test_predicted_pooling_adds_the_loss_of_the_inference_embeddings(params: dict) -> None:
    """`predicted_pool_weight` adds the speaker loss of exactly the embeddings `forward` serves."""
    torch.manual_seed(0)
    model = build_model("fast-cnn", params).eval()  # eval: BatchNorm gives the same output each call
    head = AAMSoftmax(model.cfg.embedding_dim, 4)
    feats = torch.randn(2, 64, 500)
    labels = torch.zeros(2, 125, 3)
    labels[:, :60, 0] = 1
    labels[:, 60:, 1] = 1
    ids = torch.tensor([[0, 1, -1], [2, 3, -1]])
    _, plain, _ = training_step(model, head, feats, labels, ids, TrainConfig())
    _, both, _ = training_step(model, head, feats, labels, ids, TrainConfig(predicted_pool_weight=0.5))
    assert both.item() > plain.item()
    # the added term: the PIT permutation maps labels onto the model's slots
    from training.losses import pit_powerset_loss

    with torch.no_grad():
        logprobs, served = model(feats)
        _, perm = pit_powerset_loss(logprobs, labels)
        aligned_ids = torch.gather(ids, 1, perm)
        valid = aligned_ids >= 0
        expected = head(served[valid], aligned_ids[valid])
    assert torch.isclose(both - plain, 0.5 * expected, rtol=1e-4, atol=1e-5)
