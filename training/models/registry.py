"""Build a model by type from params.yaml (``models.<type>``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from flywheel.config import load_params

MODEL_TYPES = ("fast-cnn", "distilhubert")


def build_model(model_type: str, params: dict[str, Any] | None = None, **overrides: Any) -> nn.Module:
    """A freshly initialised model of ``model_type`` with the architecture from params.yaml."""
    params = params or load_params()
    arch = {k: v for k, v in params["models"][model_type].items() if k not in ("chunk", "features")}
    arch.update(overrides)
    if model_type == "fast-cnn":
        from training.models.fast_cnn import FastCNN, FastCNNConfig

        # checkpoints saved before the attention layer was removed (after commit b8457ab; the release
        # fast-cnn.pt among them) store attention_dim 0: no layer, the model as it is now
        if arch.pop("attention_dim", 0):
            raise ValueError(
                "attention_dim (the Fast CNN attention layer) was removed after commit b8457ab: "
                "this checkpoint or recipe needs that commit"
            )
        arch["dilations"] = tuple(arch.get("dilations", FastCNNConfig.dilations))
        return FastCNN(FastCNNConfig(**arch))
    if model_type == "distilhubert":
        from training.models.distilhubert import DistilHubert, DistilHubertConfig

        for key in ("conv_dim", "conv_kernel", "conv_stride"):
            if key in arch:
                arch[key] = tuple(arch[key])
        return DistilHubert(DistilHubertConfig(**arch))
    raise KeyError(f"unknown model type {model_type!r}; choose one of {MODEL_TYPES}")
