"""The promotion rules, defined once: every place that applies them reads :class:`GateRules`.

``params.yaml: promotion``:

* ``gate_set``: the frozen set the gate scores on (default ``data/real/confirm-real``: real voices,
  held-out speakers, neither dev nor test; built by ``flywheel data real``, DVC stage ``real``);
* ``max_der`` (0.20): at or below it a version may become ``champion``;
* ``beta_max_der`` (0.30): above ``max_der`` and at or below this, alias ``challenger`` (beta, A/B
  traffic); above it, refused;
* ``tolerance`` (0.01): a candidate whose DER is worse than the champion's by more than this is a
  regression (refused);
* ``bootstrap``: the release rule on the paired difference ``DER(candidate) - DER(champion)`` over the
  gate set's files (:func:`flywheel.metrics.paired_bootstrap`): with ``require_better`` (default) the
  candidate replaces a champion only when the whole ``confidence`` interval lies below 0.

The rules are a pure function (:meth:`GateRules.decide`) so they are tested at their boundaries
without a registry; :mod:`registry.promote` feeds them the gate's own evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flywheel.config import REPO_ROOT, load_params

if TYPE_CHECKING:
    from flywheel.metrics import PairedDifference

Action = Literal["champion", "challenger", "rejected"]

DEFAULT_GATE_SET = "data/real/confirm-real"
DEFAULTS: dict[str, Any] = {
    "gate_set": DEFAULT_GATE_SET,
    "max_der": 0.20,
    "beta_max_der": 0.30,
    "tolerance": 0.01,
    "bootstrap": {"samples": 2000, "confidence": 0.95, "require_better": True},
}


def promotion_params(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``params.yaml: promotion`` with the defaults filled in (``bootstrap`` merged key by key)."""
    params = params if params is not None else load_params()
    given = dict(params.get("promotion") or {})
    merged = {**DEFAULTS, **given}
    merged["bootstrap"] = {**DEFAULTS["bootstrap"], **(given.get("bootstrap") or {})}
    return merged


@dataclass(frozen=True)
class GateRules:
    """The product rule and the release rule, with the frozen gate set they are applied on."""

    max_der: float = 0.20
    beta_max_der: float = 0.30
    tolerance: float = 0.01
    gate_set: Path = field(default_factory=lambda: REPO_ROOT / DEFAULT_GATE_SET)
    bootstrap_samples: int = 2000
    confidence: float = 0.95
    require_better: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.max_der <= self.beta_max_der:
            raise ValueError(f"need 0 <= max_der <= beta_max_der, got {self.max_der}, {self.beta_max_der}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None) -> GateRules:
        """The rules of ``params.yaml: promotion`` (defaults where a key is missing)."""
        p = promotion_params(params)
        gate = Path(p["gate_set"])
        boot = p["bootstrap"]
        return cls(
            max_der=float(p["max_der"]),
            beta_max_der=float(p["beta_max_der"]),
            tolerance=float(p["tolerance"]),
            gate_set=gate if gate.is_absolute() else REPO_ROOT / gate,
            bootstrap_samples=int(boot["samples"]),
            confidence=float(boot["confidence"]),
            require_better=bool(boot["require_better"]),
        )

    def passes(self, der: float) -> bool:
        """DER known and at most ``max_der`` (what a champion needs, regardless of comparisons)."""
        return not math.isnan(der) and der <= self.max_der

    def describe(self) -> str:
        """One line for people: the whole rule."""
        better = (
            f"and the {self.confidence:.0%} paired-bootstrap interval of DER - champion DER below 0"
            if self.require_better
            else f"and DER <= champion DER + {self.tolerance:g}"
        )
        return (
            f"gate on {self.gate_set}: DER <= {self.max_der:g} {better} -> champion; "
            f"<= {self.beta_max_der:g} -> challenger; above -> refused"
        )

    def decide(
        self,
        der: float,
        champion_der: float = math.nan,
        difference: PairedDifference | None = None,
    ) -> tuple[Action, str]:
        """``(action, reason)`` for a candidate's DER, the champion's (nan: none) and their paired
        difference on the gate set (``None``: no champion to compare with)."""
        if math.isnan(der):
            return "rejected", "DER unknown"
        if der > self.beta_max_der:
            return "rejected", f"DER {der:.4f} > beta_max_der {self.beta_max_der:g}"
        if der > self.max_der:
            return "challenger", (
                f"max_der {self.max_der:g} < DER {der:.4f} <= beta_max_der {self.beta_max_der:g}: beta"
            )
        if not math.isnan(champion_der) and der > champion_der + self.tolerance:
            return "rejected", (
                f"regression: DER {der:.4f} > champion DER {champion_der:.4f} + tolerance {self.tolerance:g}"
            )
        if self.require_better and difference is not None and not difference.high < 0:
            return "rejected", (
                f"not better than the champion: DER - champion DER {difference.delta:+.4f}, "
                f"{difference.confidence:.0%} interval [{difference.low:+.4f}, {difference.high:+.4f}] "
                "does not lie below 0"
            )
        detail = (
            f", interval [{difference.low:+.4f}, {difference.high:+.4f}] vs the champion"
            if difference is not None
            else ""
        )
        return "champion", (
            f"DER {der:.4f} <= max_der {self.max_der:g}, no regression beyond tolerance "
            f"{self.tolerance:g}{detail}"
        )
