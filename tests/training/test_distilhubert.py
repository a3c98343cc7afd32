"""DistilHuBERT arm: architecture, pretrained loading (--init-from), smoke training, int8 export, ONNX use.

A tiny configuration of the same architecture keeps these fast; the full-size parameter count is
checked separately.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from distilhubert_fixtures import TINY, tiny_config

from training.models.distilhubert import DistilHubert, DistilHubertConfig, load_pretrained
from training.models.heads import count_parameters
from training.models.registry import build_model


def test_full_size_matches_distilhubert(params: dict) -> None:
    model = build_model("distilhubert", params)
    encoder = count_parameters(model.hubert)
    assert 23.0e6 <= encoder <= 24.0e6, encoder  # ntu-spml/distilhubert: 23.49M
    assert model.hubert.config.num_hidden_layers == 2 and model.hubert.config.hidden_size == 768


def test_output_contract_and_frame_rate() -> None:
    model = DistilHubert(tiny_config()).eval()
    with torch.no_grad():
        logprobs, emb = model(torch.randn(2, 32000) * 0.1)
    assert logprobs.shape == (2, 100, 7)  # 2 s at 20 ms frames
    assert emb.shape == (2, 3, 32)
    assert torch.allclose(logprobs.exp().sum(-1), torch.ones(2, 100), atol=1e-4)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2, 3), atol=1e-4)


def test_gain_invariance() -> None:
    model = DistilHubert(tiny_config()).eval()
    x = torch.randn(1, 32000) * 0.1
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(x * 0.01)
    assert torch.allclose(a, b, atol=1e-3)


def test_load_pretrained_copies_every_encoder_weight(pretrained_dir: Path) -> None:
    from transformers import HubertModel

    reference = HubertModel.from_pretrained(pretrained_dir, local_files_only=True).state_dict()
    model = DistilHubert(tiny_config())
    assert load_pretrained(model, pretrained_dir) == []
    for key, value in model.hubert.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_load_pretrained_refuses_bad_paths_and_shapes(pretrained_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_pretrained(DistilHubert(tiny_config()), tmp_path / "missing")
    other = DistilHubertConfig(**{**TINY, "conv_dim": (48,) * 7})
    with pytest.raises(ValueError, match="shapes differ"):
        load_pretrained(DistilHubert(other), pretrained_dir)


@pytest.fixture(scope="module")
def tiny_params(params: dict) -> dict:
    p = copy.deepcopy(params)
    p["models"]["distilhubert"].update(TINY)
    return p


@pytest.fixture(scope="module")
def tiny_checkpoint(
    smoke_data: Path, tiny_params: dict, pretrained_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from training.train import train

    out = tmp_path_factory.mktemp("distilhubert") / "ckpt"
    summary = train(
        "distilhubert",
        "smoke",
        out_dir=out,
        resume=False,
        params=tiny_params,
        data_dir=smoke_data,
        init_from=pretrained_dir,
    )
    assert summary["epochs"] == 1 and 0.0 <= summary["best_dev_der"] <= 2.0
    return Path(summary["checkpoint"])


def test_training_starts_from_the_pretrained_encoder(tiny_checkpoint: Path, pretrained_dir: Path) -> None:
    ckpt = torch.load(tiny_checkpoint, weights_only=False)
    assert ckpt["model_type"] == "distilhubert" and ckpt["features"]["kind"] == "waveform"
    assert ckpt["chunk"]["frame_s"] == 0.02 and 1.0 <= ckpt["chunk"]["chunk_s"] <= 2.0


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_export_parity_and_int8(
    tiny_checkpoint: Path, tmp_path: Path, smoke_data: Path, quantize: str | None
) -> None:
    from flywheel.onnx_model import OnnxSegmenter
    from training.export import export_onnx

    report = export_onnx(
        tiny_checkpoint, tmp_path / "m.onnx", optimization="extended", quantize=quantize, data_dir=smoke_data
    )
    assert report["max_abs_diff"] <= report["tolerance"]
    assert report["quantize_method"] == ("static" if quantize else "none")
    seg = OnnxSegmenter(tmp_path / "m.onnx")
    assert seg.metadata.model_type == "distilhubert" and seg.metadata.features.kind == "waveform"
    samples = round(seg.metadata.chunk_s * 16000)
    logprobs, emb = seg(np.zeros((3, samples), dtype=np.float32))
    assert logprobs.shape == (3, samples // 320, 7) and emb.shape == (3, 3, 32)


def test_diarize_with_onnxruntime_only(
    tiny_checkpoint: Path, tmp_path: Path, smoke_data: Path, diarize_without_torch: Callable
) -> None:
    from training.export import export_onnx

    onnx_path = tmp_path / "distilhubert.onnx"
    export_onnx(tiny_checkpoint, onnx_path, optimization="extended")
    wav = next((smoke_data / "conversations" / "smoke" / "test").glob("*.wav"))
    speakers, speech = diarize_without_torch("distilhubert", onnx_path, wav).split()
    assert int(speakers) >= 0 and float(speech) >= 0.0


def test_cli_train_help_documents_init_from() -> None:
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert (
        result.exit_code == 0 and "--init-from" in result.output and "ntu-spml/distilhubert" in result.output
    )
