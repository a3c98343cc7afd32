"""A tiny DistilHuBERT of the real architecture (seconds to train), shared by the tests that build one
(``pytest_plugins`` of ``tests/conftest.py``): its configuration and an encoder saved in the
``ntu-spml/distilhubert`` layout (``--init-from``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.models.distilhubert import DistilHubertConfig

TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "conv_dim": [32] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "embedding_hidden": 64,
    "embedding_dim": 32,
}


def tiny_config() -> DistilHubertConfig:
    return DistilHubertConfig(**{**TINY, "conv_dim": tuple(TINY["conv_dim"])})


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small checkpoint in the ntu-spml/distilhubert layout (config.json + model.safetensors)."""
    from transformers import HubertModel

    torch.manual_seed(1)
    encoder = HubertModel(tiny_config().hubert_config())
    path = tmp_path_factory.mktemp("distilhubert-pretrained")
    encoder.save_pretrained(path)
    assert (path / "config.json").exists()
    return path
