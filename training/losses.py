"""Training losses: permutation-invariant powerset segmentation and additive-angular-margin speakers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.powerset import multilabel_to_powerset, permutations


def pit_powerset_loss(logprobs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Powerset cross-entropy under the best permutation of local speaker slots, per chunk.

    Args:
        logprobs: ``(B, T, 7)`` powerset log-probabilities.
        labels: ``(B, T, 3)`` 0/1 reference activity of the local speakers.
    Returns:
        mean loss, and ``(B, 3)`` slot permutation applied to the labels (``labels[:, :, perm]``).
    """
    perms = torch.tensor(permutations(), device=labels.device)  # (P, 3)
    losses = []
    for perm in perms:
        target = multilabel_to_powerset(labels[:, :, perm])  # (B, T)
        nll = F.nll_loss(logprobs.transpose(1, 2), target, reduction="none").mean(dim=1)  # (B,)
        losses.append(nll)
    stacked = torch.stack(losses, dim=1)  # (B, P)
    best = stacked.argmin(dim=1)
    return stacked.gather(1, best[:, None]).mean(), perms[best]


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace) over the training speakers; training only."""

    def __init__(self, embedding_dim: int, num_speakers: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_speakers, embedding_dim) * 0.01)
        self.margin = margin
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss over ``embeddings (N, D)`` (L2-normalised) with ``targets (N,)``."""
        cosine = F.linear(embeddings, F.normalize(self.weight, dim=-1)).clamp(-1 + 1e-7, 1 - 1e-7)
        theta = torch.acos(cosine)
        target_logit = torch.cos(theta + self.margin)
        onehot = F.one_hot(targets, cosine.shape[1]).bool()
        logits = torch.where(onehot, target_logit, cosine) * self.scale
        return F.cross_entropy(logits, targets)
