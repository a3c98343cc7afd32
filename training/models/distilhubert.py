"""DistilHuBERT diarization model: the accuracy arm (~23.5M parameters, transformer).

Raw 16 kHz waveform -> HuBERT convolutional feature encoder (7 conv layers, 512 channels, 20 ms
frames) -> projection to 768 -> convolutional positional embedding -> 2 transformer layers (768
hidden, 12 heads, 3072 feed-forward): the architecture of ``ntu-spml/distilhubert``, built with
``transformers`` (``HubertConfig``/``HubertModel``). On top sit the same heads as the Fast CNN
(:class:`training.models.heads.LocalDiarizationModel`): powerset segmentation over 3 local speakers and
one embedding per local speaker.

Pretrained weights: :func:`load_pretrained` reads a local directory in the Hugging Face layout of
``ntu-spml/distilhubert`` (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``); nothing is
fetched from a hub. Without it the model starts from random weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel

from training.models.heads import LocalDiarizationModel

FRAME_SAMPLES = 320  # HuBERT's conv encoder: 20 ms per output frame
RECEPTIVE_FIELD = 400  # samples seen by one output frame (25 ms)


@dataclass
class DistilHubertConfig:
    """Architecture hyper-parameters (params.yaml: ``models.distilhubert``)."""

    hidden_size: int = 768
    num_hidden_layers: int = 2
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    dropout: float = 0.1
    embedding_hidden: int = 1024
    embedding_dim: int = 256
    # inference pooling weights: P(alone) ** embedding_pool_power (1: the probabilities as they are)
    embedding_pool_power: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)

    def hubert_config(self) -> HubertConfig:
        """The ``transformers`` config of the encoder (ntu-spml/distilhubert's, minus training-only parts)."""
        return HubertConfig(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            conv_dim=list(self.conv_dim),
            conv_kernel=list(self.conv_kernel),
            conv_stride=list(self.conv_stride),
            conv_bias=False,
            feat_extract_norm="group",
            do_stable_layer_norm=False,
            num_conv_pos_embeddings=self.num_conv_pos_embeddings,
            num_conv_pos_embedding_groups=self.num_conv_pos_embedding_groups,
            hidden_dropout=self.dropout,
            attention_dropout=self.dropout,
            activation_dropout=0.0,
            feat_proj_dropout=0.0,
            layerdrop=0.0,  # only 2 layers: dropping one would remove half the encoder
            apply_spec_augment=False,  # masks would hide frames the segmentation loss scores
        )


class DistilHubert(LocalDiarizationModel):
    """``forward(waveform[B, samples]) -> (powerset_logprobs[B, samples/320, 7], embeddings[B, 3, D])``."""

    def __init__(self, cfg: DistilHubertConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DistilHubertConfig()
        self.hubert = HubertModel(cfg.hubert_config())
        self._init_heads(
            cfg.hidden_size, cfg.embedding_hidden, cfg.embedding_dim, cfg.embedding_pool_power
        )

    def backbone(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` waveform -> ``(B, 768, samples/320)`` hidden frames (frame k centred at 320k+160)."""
        x = waveform - waveform.mean(dim=1, keepdim=True)
        x = x / (x.std(dim=1, keepdim=True) + 1e-5)  # gain invariance, inside the exported graph
        pad = (RECEPTIVE_FIELD - FRAME_SAMPLES) // 2
        x = F.pad(x, (pad, pad))
        hidden = self.hubert(x).last_hidden_state  # (B, T', 768)
        return hidden.transpose(1, 2)


def load_pretrained(model: DistilHubert, path: str | Path) -> list[str]:
    """Load encoder weights from a local ``ntu-spml/distilhubert``-layout directory (or its weights file).

    Returns the encoder parameters that were not in the checkpoint (empty when everything matched).
    Raises ``FileNotFoundError``/``ValueError`` for a missing path or an incompatible architecture.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--init-from {path}: no such file or directory")
    if path.is_dir():
        pretrained = HubertModel.from_pretrained(str(path), local_files_only=True)
        state = pretrained.state_dict()
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # checkpoints saved from a wrapper (e.g. HubertForCTC) prefix the encoder's keys with "hubert."
    state = {k.removeprefix("hubert."): v for k, v in state.items()}
    own = model.hubert.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"{path}: shapes differ from models.distilhubert for {mismatched[:5]}")
    missing, _ = model.hubert.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    if len(missing) == len(own):
        raise ValueError(f"{path}: no DistilHuBERT encoder weights found")
    return list(missing)
