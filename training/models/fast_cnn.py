"""Fast CNN: a ~2.3M-parameter convolutional diarization model for CPU inference.

Log-mel frames (10 ms) -> strided stem (40 ms frames) -> dilated depthwise-separable residual blocks
with squeeze-excitation (global context) -> two heads:

* segmentation: per-frame powerset log-probabilities over 3 local speakers (overlap-aware);
* embedding: per local speaker, statistics pooling of the backbone features weighted by the frames
  where that speaker speaks alone, then an MLP to an L2-normalised embedding (EEND-vector-clustering).

Most parameters sit in the embedding MLP, which runs on 3 pooled vectors per chunk, so they cost
almost nothing at inference; the per-frame compute is kept small for a sub-5 ms chunk on one thread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.models.heads import LocalDiarizationModel, count_parameters


@dataclass
class FastCNNConfig:
    """Architecture hyper-parameters (params.yaml: ``models.fast-cnn``)."""

    n_mels: int = 64
    stem_channels: int = 128
    channels: int = 160
    expansion: int = 2
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 2)
    kernel_size: int = 5
    embedding_hidden: int = 1280
    embedding_dim: int = 256
    # inference pooling weights: P(alone) ** embedding_pool_power (1: the probabilities as they are)
    embedding_pool_power: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    """Depthwise dilated conv -> pointwise expand/project -> squeeze-excitation -> residual."""

    def __init__(self, channels: int, expansion: int, kernel_size: int, dilation: int):
        super().__init__()
        self.dw = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size // 2),
                            dilation=dilation, groups=channels)
        self.norm = nn.BatchNorm1d(channels)
        self.pw1 = nn.Conv1d(channels, channels * expansion, 1)
        self.pw2 = nn.Conv1d(channels * expansion, channels, 1)
        self.se1 = nn.Linear(channels, channels // 4)
        self.se2 = nn.Linear(channels // 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw2(F.relu(self.pw1(self.norm(self.dw(x)))))
        gate = torch.sigmoid(self.se2(F.relu(self.se1(y.mean(dim=2)))))
        return x + y * gate.unsqueeze(2)


class FastCNN(LocalDiarizationModel):
    """``forward(features[B, n_mels, T]) -> (powerset_logprobs[B, T/4, 7], embeddings[B, 3, D])``."""

    frame_hop: int = 4  # output frames per 4 input frames (40 ms)

    def __init__(self, cfg: FastCNNConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or FastCNNConfig()
        c = cfg.channels
        # Gain is removed per chunk (one scalar: the mean log energy), but not the spectral envelope,
        # which carries speaker identity; per-bin statistics are global (BatchNorm).
        self.input_norm = nn.BatchNorm1d(cfg.n_mels)
        self.stem = nn.Sequential(
            nn.Conv1d(cfg.n_mels, cfg.stem_channels, 3, stride=2, padding=1),
            nn.BatchNorm1d(cfg.stem_channels),
            nn.ReLU(),
            nn.Conv1d(cfg.stem_channels, c, 3, stride=2, padding=1),
            nn.BatchNorm1d(c),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*[Block(c, cfg.expansion, cfg.kernel_size, d) for d in cfg.dilations])
        self._init_heads(c, cfg.embedding_hidden, cfg.embedding_dim, cfg.embedding_pool_power)

    def load_grown(self, state: dict[str, torch.Tensor]) -> list[int]:
        """Load the weights of a Fast CNN that has fewer residual blocks (this model's first ones).

        The blocks it lacks start as identity (their last projection zeroed, so ``x + 0``): the grown
        model computes exactly what the smaller one did, and training goes on with more depth.
        Returns the indices of the new blocks.

        Raises:
            ValueError: the weights differ in anything but whole trailing blocks.
        """
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        new_blocks = sorted({int(k.split(".")[1]) for k in missing if k.startswith("blocks.")})
        kept = len(self.blocks) - len(new_blocks)
        if (
            unexpected
            or any(not k.startswith("blocks.") for k in missing)
            or new_blocks != list(range(kept, len(self.blocks)))
        ):
            raise ValueError(
                f"cannot grow from these weights: missing {missing[:4]}..., unexpected {unexpected[:4]}..."
            )
        self.load_state_dict(state, strict=False)  # shapes of the shared tensors are checked here
        for i in new_blocks:
            nn.init.zeros_(self.blocks[i].pw2.weight)
            nn.init.zeros_(self.blocks[i].pw2.bias)
        return new_blocks

    def backbone(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, T)`` log-mel -> ``(B, C, T/4)`` hidden frames."""
        features = features - features.mean(dim=(1, 2), keepdim=True)
        return self.blocks(self.stem(self.input_norm(features)))


__all__ = ["FastCNN", "FastCNNConfig", "count_parameters"]
