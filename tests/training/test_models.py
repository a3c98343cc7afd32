"""Model contract: sizes, shapes, and the permutation-invariant loss."""

from __future__ import annotations

import torch

from training.losses import AAMSoftmax, pit_powerset_loss
from training.models.fast_cnn import count_parameters
from training.models.powerset import multilabel_to_powerset
from training.models.registry import build_model


def test_fast_cnn_size_and_outputs(params) -> None:
    model = build_model("fast-cnn", params).eval()
    n = count_parameters(model)
    assert 2.0e6 <= n <= 2.5e6, n
    logprobs, emb = model(torch.randn(2, 64, 500))
    assert logprobs.shape == (2, 125, 7) and emb.shape[:2] == (2, 3)
    assert torch.allclose(logprobs.exp().sum(-1), torch.ones(2, 125), atol=1e-5)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2, 3), atol=1e-4)


def test_fast_cnn_accepts_any_length(params) -> None:
    model = build_model("fast-cnn", params).eval()
    logprobs, _ = model(torch.randn(1, 64, 300))
    assert logprobs.shape == (1, 75, 7)


def test_fast_cnn_grows_by_identity_blocks(params) -> None:
    """`load_grown`: a deeper Fast CNN starts from a smaller one's weights and computes the same."""
    import pytest

    torch.manual_seed(0)
    small = build_model("fast-cnn", params).eval()
    dilations = [*params["models"]["fast-cnn"]["dilations"], 4]
    grown = build_model("fast-cnn", params, dilations=dilations).eval()
    assert grown.load_grown(small.state_dict()) == [len(dilations) - 1]
    assert count_parameters(grown) <= 2.5e6  # one more block still fits the size cap
    x = torch.randn(2, 64, 500)
    for a, b in zip(small(x), grown(x), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="cannot grow"):
        small.load_grown(grown.state_dict())  # shrinking is not growing


def test_checkpoints_from_before_the_attention_layer_was_removed_still_load(params, tmp_path) -> None:
    """A checkpoint config that stores `attention_dim` 0 (no attention layer: the release fast-cnn.pt)
    loads as the model it is; one with the layer is refused with the commit that still had it."""
    import pytest

    from training.export import load_checkpoint

    torch.manual_seed(0)
    model = build_model("fast-cnn", params).eval()
    path = tmp_path / "best.pt"
    ckpt = {"model_type": "fast-cnn", "config": {**model.cfg.as_dict(), "attention_dim": 0}}
    torch.save({**ckpt, "model": model.state_dict()}, path)
    loaded, _ = load_checkpoint(path)
    x = torch.randn(1, 64, 500)
    for a, b in zip(model(x), loaded(x), strict=True):
        assert torch.equal(a, b)
    torch.save({**ckpt, "config": {**ckpt["config"], "attention_dim": 64}, "model": {}}, path)
    with pytest.raises(ValueError, match=r"attention_dim.*b8457ab"):
        load_checkpoint(path)


def test_embedding_pooling_power_sharpens_the_weights(params) -> None:
    """forward pools each local speaker's frames with P(alone) ** pool_power (1: as before)."""
    torch.manual_seed(0)
    model = build_model("fast-cnn", params).eval()
    x = torch.randn(2, 64, 500)
    with torch.no_grad():
        h = model.backbone(x)
        alone = model.segment(h)[..., 1:4].exp()
        for power in (1.0, 3.0):
            model.pool_power = power
            _, emb = model(x)
            assert torch.allclose(emb, model.embed(h, alone**power), atol=1e-5)
    assert build_model("fast-cnn", params, embedding_pool_power=2.5).pool_power == 2.5


def test_checkpoints_take_the_pooling_power_of_todays_params(params, tmp_path) -> None:
    """The pooling power is tuned after training: loading a checkpoint applies params.yaml's value."""
    from training.export import load_checkpoint

    model = build_model("fast-cnn", params, embedding_pool_power=1.0)
    path = tmp_path / "best.pt"
    torch.save({"model_type": "fast-cnn", "config": model.cfg.as_dict(), "model": model.state_dict()}, path)
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["config"]["embedding_pool_power"] == 1.0
    assert loaded.pool_power == params["models"]["fast-cnn"]["embedding_pool_power"] != 1.0


def test_checkpoints_average_into_a_soup(params, tmp_path) -> None:
    """`flywheel average-checkpoints`: mean weights of one architecture; other shapes are refused."""
    from typer.testing import CliRunner

    from cli.main import app

    paths = []
    for seed, dilations in ((0, None), (1, None), (2, [*params["models"]["fast-cnn"]["dilations"], 4])):
        torch.manual_seed(seed)
        model = build_model("fast-cnn", params, **({"dilations": dilations} if dilations else {}))
        paths.append(tmp_path / f"m{seed}.pt")
        ckpt = {"model_type": "fast-cnn", "config": model.cfg.as_dict(), "model": model.state_dict()}
        torch.save({**ckpt, "chunk": {"chunk_s": 5.0, "frame_s": 0.04}, "dev_der": 0.3}, paths[-1])
    out = tmp_path / "soup" / "best.pt"
    result = CliRunner().invoke(app, ["average-checkpoints", str(paths[0]), str(paths[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    soup = torch.load(out, map_location="cpu", weights_only=False)
    a, b = (torch.load(p, map_location="cpu", weights_only=False)["model"] for p in paths[:2])
    name = "blocks.0.pw1.weight"
    assert torch.allclose(soup["model"][name], (a[name] + b[name]) / 2)
    assert soup["averaged_checkpoints"] == [str(p) for p in paths[:2]] and soup["dev_der"] is None
    assert soup["chunk"] == {"chunk_s": 5.0, "frame_s": 0.04}
    result = CliRunner().invoke(app, ["average-checkpoints", str(paths[0]), str(paths[2]), "--out", str(out)])
    assert result.exit_code == 2 and "not the architecture" in result.output
    # the deeper model first: the shallower one is grown to its depth (extra block as identity)
    result = CliRunner().invoke(app, ["average-checkpoints", str(paths[2]), str(paths[0]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    soup = torch.load(out, map_location="cpu", weights_only=False)["model"]
    deep = torch.load(paths[2], map_location="cpu", weights_only=False)["model"]
    last = f"blocks.{len(params['models']['fast-cnn']['dilations'])}.pw2.weight"
    assert torch.allclose(soup[last], deep[last] / 2)  # averaged with the identity block's zeros
    dw = last.replace("pw2", "dw")
    assert torch.allclose(soup[dw], deep[dw])  # the identity block is built from the deeper one's
    assert torch.allclose(soup[name], (deep[name] + a[name]) / 2)


def test_powerset_encoding() -> None:
    labels = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]])
    assert multilabel_to_powerset(labels).tolist() == [0, 1, 3, 4, 6]


def test_pit_loss_is_permutation_invariant() -> None:
    torch.manual_seed(0)
    logprobs = torch.log_softmax(torch.randn(4, 50, 7), dim=-1)
    labels = (torch.rand(4, 50, 3) > 0.7).float()
    loss, _ = pit_powerset_loss(logprobs, labels)
    swapped, perm = pit_powerset_loss(logprobs, labels[:, :, [2, 0, 1]])
    assert torch.allclose(loss, swapped)
    assert perm.shape == (4, 3)


def test_pit_loss_prefers_the_right_answer() -> None:
    labels = torch.zeros(1, 20, 3)
    labels[0, :10, 1] = 1
    perfect = torch.full((1, 20, 7), -30.0)
    perfect[0, :10, 1] = 0.0  # slot order differs from labels: PIT must still find it perfect
    perfect[0, 10:, 0] = 0.0
    assert pit_powerset_loss(perfect, labels)[0] < 1e-6


def test_aam_softmax_decreases_with_correct_embedding() -> None:
    head = AAMSoftmax(8, 5)
    target = torch.tensor([2])
    good = torch.nn.functional.normalize(head.weight[2:3].detach(), dim=-1)
    bad = torch.nn.functional.normalize(head.weight[3:4].detach(), dim=-1)
    assert head(good, target) < head(bad, target)
