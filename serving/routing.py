"""A/B routing: weights per arm, sticky by client id, random otherwise.

A client id is hashed (SHA-256) to a point in ``[0, 1)`` and compared with the cumulative weights of
the arms in a fixed (sorted) order, so the same client lands on the same arm for as long as the
weights do not change, and the share of clients per arm follows the weights.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class WeightError(ValueError):
    """Weights that cannot describe a split (negative, not finite, unknown format)."""


def parse_weights(items: Iterable[str]) -> dict[str, float]:
    """``["fast-cnn=0.9", "distilhubert=0.1"]`` -> ``{"fast-cnn": 0.9, "distilhubert": 0.1}``."""
    weights: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise WeightError(f"expected ARM=WEIGHT, got {item!r}")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise WeightError(f"weight of {name.strip()!r} is not a number: {value!r}") from None
    return validate_weights(weights)


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Check weights are finite and non-negative; returns a plain dict copy."""
    out: dict[str, float] = {}
    for name, value in weights.items():
        w = float(value)
        if not math.isfinite(w) or w < 0:
            raise WeightError(f"weight of {name!r} must be a finite number >= 0, got {value!r}")
        out[str(name)] = w
    return out


def hash_unit(key: str) -> float:
    """A stable point in ``[0, 1)`` for ``key`` (first 8 bytes of its SHA-256)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class Router:
    """An immutable split over the available arms; build a new one to change weights.

    Arms that are configured but unavailable get weight 0. If no available arm has a positive
    weight, traffic is split evenly over the available arms (serving beats refusing).
    """

    weights: Mapping[str, float]
    available: tuple[str, ...]
    _cumulative: tuple[tuple[str, float], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        weights = validate_weights(self.weights)
        arms = sorted(set(self.available))
        total = sum(weights.get(a, 0.0) for a in arms)
        shares = {a: weights.get(a, 0.0) / total for a in arms} if total > 0 else dict.fromkeys(arms, 1.0)
        norm = sum(shares.values()) or 1.0
        acc, cumulative = 0.0, []
        for arm in arms:
            if shares[arm] > 0:
                acc += shares[arm] / norm
                cumulative.append((arm, acc))
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    @property
    def effective(self) -> dict[str, float]:
        """Share of traffic per available arm (sums to 1 when any arm is available)."""
        out, prev = {}, 0.0
        for arm, acc in self._cumulative:
            out[arm] = acc - prev
            prev = acc
        return {a: round(out.get(a, 0.0), 12) for a in sorted(set(self.available))}

    def pick(self, point: float) -> str:
        """The arm owning ``point`` in ``[0, 1)``."""
        if not self._cumulative:
            raise LookupError("no arm is available")
        for arm, acc in self._cumulative:
            if point < acc:
                return arm
        return self._cumulative[-1][0]

    def choose(self, client_id: str | None = None, rng: random.Random | None = None) -> str:
        """Sticky arm for ``client_id``; a random one by weight without it."""
        if client_id:
            return self.pick(hash_unit(client_id))
        return self.pick((rng or random).random())
