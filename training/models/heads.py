"""The output heads both arms share (one contract for clustering, export, evaluation and serving).

A subclass supplies :meth:`LocalDiarizationModel.backbone` (model input -> hidden frames
``(B, C, T')``); this base class turns hidden frames into

* ``segment``: per-frame powerset log-probabilities over 3 local speakers (overlap-aware);
* ``embed``: per local speaker, weighted mean+std statistics pooling over the frames where that
  speaker speaks alone, an MLP, BatchNorm centring (x-vector style) and L2 normalisation
  (EEND-vector-clustering). Training pools over the reference single-speaker frames; ``forward``
  (inference) weights each frame by the model's own P(speaks alone) ** ``pool_power``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.powerset import MAX_SPEAKERS, NUM_CLASSES, mapping_matrix


class LocalDiarizationModel(nn.Module):
    """``forward(x) -> (powerset_logprobs[B, T', 7], embeddings[B, 3, D])``."""

    def _init_heads(
        self, channels: int, embedding_hidden: int, embedding_dim: int, pool_power: float = 1.0
    ) -> None:
        # at inference each local speaker's frames are weighted by P(speaks alone) ** pool_power:
        # > 1 sharpens the weights towards the hard single-speaker masks the embedding is trained on
        self.pool_power = float(pool_power)
        self.seg_head = nn.Conv1d(channels, NUM_CLASSES, 1)
        self.emb_mlp = nn.Sequential(
            nn.Linear(2 * channels, embedding_hidden),
            nn.LayerNorm(embedding_hidden),
            nn.ReLU(),
            nn.Linear(embedding_hidden, embedding_hidden // 2),
            nn.ReLU(),
            nn.Linear(embedding_hidden // 2, embedding_dim),
        )
        # centres embeddings across speakers so they cannot share one dominant direction
        self.emb_norm = nn.BatchNorm1d(embedding_dim, affine=False)
        self.register_buffer("powerset_map", mapping_matrix(), persistent=False)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> ``(B, C, T')`` hidden frames."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone(x)
        logprobs = self.segment(h)
        return logprobs, self.embed(h, self.pool_weights(logprobs))

    def pool_weights(self, logprobs: torch.Tensor) -> torch.Tensor:
        """``(B, T', 7)`` powerset log-probabilities -> ``(B, T', 3)`` inference pooling weights: the
        probability that local speaker k speaks alone (classes 1..3) ** ``pool_power``."""
        return (logprobs[..., 1 : 1 + MAX_SPEAKERS] * self.pool_power).exp()

    def segment(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden frames -> ``(B, T', 7)`` powerset log-probabilities."""
        return F.log_softmax(self.seg_head(h).transpose(1, 2), dim=-1)

    def embed(self, h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted mean+std statistics pooling per local speaker -> MLP -> L2-normalised embeddings."""
        w = weights / (weights.sum(dim=1, keepdim=True) + 1e-4)  # (B, T', 3)
        mean = torch.einsum("bct,btk->bkc", h, w)  # (B, 3, C)
        sq = torch.einsum("bct,btk->bkc", h * h, w)
        std = torch.sqrt((sq - mean * mean).clamp(min=1e-5))
        e = self.emb_mlp(torch.cat([mean, std], dim=-1))  # (B, 3, D)
        e = self.emb_norm(e.reshape(-1, e.shape[-1])).reshape(e.shape)
        return F.normalize(e, dim=-1)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
