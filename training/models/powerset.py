"""Powerset encoding of up to 3 local speakers with at most 2 speaking at once."""

from __future__ import annotations

import itertools

import torch

MAX_SPEAKERS = 3
# Class index -> set of active local speakers.
CLASSES: list[tuple[int, ...]] = [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
NUM_CLASSES = len(CLASSES)


def mapping_matrix() -> torch.Tensor:
    """``(NUM_CLASSES, MAX_SPEAKERS)`` 0/1 matrix: which speakers each class activates."""
    m = torch.zeros(NUM_CLASSES, MAX_SPEAKERS)
    for c, active in enumerate(CLASSES):
        for s in active:
            m[c, s] = 1.0
    return m


def multilabel_to_powerset(labels: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` 0/1 activity -> ``(...)`` class index (3 speakers at once map to the best pair)."""
    m = mapping_matrix().to(labels.device)
    # score each class by agreement with the labels; exact match wins, 3-speaker frames pick a pair.
    score = labels.float() @ m.T - (1 - labels.float()) @ m.T
    return score.argmax(dim=-1)


def permutations() -> list[tuple[int, ...]]:
    """All orderings of the local speaker slots."""
    return list(itertools.permutations(range(MAX_SPEAKERS)))
