"""Promotion gate: a registered version becomes ``champion`` only on its DER on the fixed gate set.

Rules (``params.yaml: promotion``):

* DER <= ``max_der`` (0.20) and not worse than the current champion's DER by more than ``tolerance``
  (0.01) -> alias ``champion`` (and tag ``promoted=true``);
* DER <= ``max_der`` but a regression vs the champion -> refused, no alias;
* ``max_der`` < DER <= ``beta_max_der`` (0.30) -> alias ``challenger`` (beta, for A/B traffic);
* DER > ``beta_max_der`` (or unknown) -> refused.

The DER is the version's ``der_gate`` tag when it was computed on the same gate set; otherwise the
version's ONNX is evaluated on the gate set (:func:`experiments.evaluate.evaluate`) and the tag written.
Every decision is recorded on the version (tags ``gate_decision``, ``gate_reason``, ``gated_at``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from experiments.registry import (
    CHALLENGER,
    CHAMPION,
    client_for,
    download_version,
    get_alias,
    last_good_version,
    normalize_set,
    passes_gate,
    promotion_params,
    tag_float,
)
from flywheel.config import REPO_ROOT, get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

Action = Literal["champion", "challenger", "rejected"]


@dataclass
class GateRules:
    """The promotion thresholds and the fixed gate set."""

    max_der: float = 0.20
    beta_max_der: float = 0.30
    tolerance: float = 0.01
    gate_set: Path = field(default_factory=lambda: REPO_ROOT / "data" / "conversations" / "full" / "test")

    @classmethod
    def from_params(cls, params: dict | None = None) -> GateRules:
        """Rules from ``params.yaml: promotion`` (defaults where a key is missing)."""
        p = promotion_params(params)
        gate = Path(p["gate_set"])
        return cls(
            max_der=float(p["max_der"]),
            beta_max_der=float(p["beta_max_der"]),
            tolerance=float(p["tolerance"]),
            gate_set=gate if gate.is_absolute() else REPO_ROOT / gate,
        )


@dataclass
class Decision:
    """What the gate decided for one model version, with the numbers behind it."""

    model_name: str
    version: str
    action: Action
    der: float
    reason: str
    champion_version: str | None = None
    champion_der: float = math.nan
    der_source: str = "tag"

    @property
    def refused(self) -> bool:
        """No alias was given."""
        return self.action == "rejected"

    def summary(self) -> str:
        """One line for people and logs."""
        verdict = {"champion": "PROMOTED to champion", "challenger": "set as CHALLENGER (beta)"}.get(
            self.action, "REFUSED"
        )
        champ = (
            f"; current champion v{self.champion_version} DER {self.champion_der:.4f}"
            if self.champion_version
            else "; no current champion"
        )
        return (
            f"{self.model_name} v{self.version}: {verdict}: DER {self.der:.4f} ({self.der_source})"
            f"{champ}: {self.reason}"
        )


def decide(der: float, champion_der: float, rules: GateRules) -> tuple[Action, str]:
    """The gate as a pure function: ``(action, reason)`` for a DER and the champion's (nan: none)."""
    if math.isnan(der):
        return "rejected", "DER unknown"
    if der > rules.beta_max_der:
        return "rejected", f"DER {der:.4f} > beta_max_der {rules.beta_max_der:g}"
    if der > rules.max_der:
        return "challenger", (
            f"max_der {rules.max_der:g} < DER {der:.4f} <= beta_max_der {rules.beta_max_der:g}: beta"
        )
    if not math.isnan(champion_der) and der > champion_der + rules.tolerance:
        return "rejected", (
            f"regression: DER {der:.4f} > champion DER {champion_der:.4f} + tolerance {rules.tolerance:g}"
        )
    return "champion", (
        f"DER {der:.4f} <= max_der {rules.max_der:g}, no regression beyond tolerance {rules.tolerance:g}"
    )


def gate_der(
    client: MlflowClient,
    uri: str,
    version: ModelVersion,
    rules: GateRules,
    reevaluate: bool = False,
    cache_dir: Path | None = None,
) -> tuple[float, str]:
    """DER of ``version`` on the gate set: its tag when computed there, else a fresh evaluation.

    Raises:
        FileNotFoundError: the gate set is needed but missing (build it with ``make data-full``).
    """
    gate = normalize_set(rules.gate_set)
    tagged = tag_float(version)
    if not reevaluate and version.tags.get("gate_set") == gate and not math.isnan(tagged):
        return tagged, "tag"
    if not rules.gate_set.is_dir():
        raise FileNotFoundError(f"gate set {rules.gate_set} missing: build it with `make data-full`")
    from experiments.evaluate import evaluate

    onnx_path = download_version(client, version, uri, cache_dir)
    out = get_settings().reports_dir / "gate" / version.name / f"v{version.version}"
    report = evaluate(version.name, rules.gate_set, out, model_path=onnx_path)
    der = float(report["total"]["collar_0"]["der"])
    for key, value in (
        ("der_gate", f"{der:.6g}"),
        ("der_gate_collar_0.25", f"{report['total']['collar_0.25']['der']:.6g}"),
        ("gate_set", gate),
    ):
        client.set_model_version_tag(version.name, version.version, key, value)
    return der, "evaluated"


def _reference_champion(
    client: MlflowClient, name: str, candidate: str, rules: GateRules
) -> ModelVersion | None:
    """The champion to compare with: the alias when it passes the gate, else the last good version."""
    champion = get_alias(client, name, CHAMPION)
    if champion is not None and str(champion.version) == candidate:
        return None  # re-gating the champion itself: thresholds only
    if champion is not None and passes_gate(tag_float(champion), rules.max_der):
        return champion
    return last_good_version(client, name, rules.max_der, exclude={candidate})


def promote(
    model_name: str,
    version: str | int,
    *,
    tracking_uri: str | None = None,
    rules: GateRules | None = None,
    reevaluate: bool = False,
    cache_dir: Path | None = None,
) -> Decision:
    """Run the gate on ``model_name`` version ``version`` and move the aliases accordingly.

    Raises:
        experiments.registry.RegistryUnavailable: MLflow does not answer.
    """
    rules = rules or GateRules.from_params()
    client, uri = client_for(tracking_uri)
    version = str(version)
    mv = client.get_model_version(model_name, version)
    try:
        der, source = gate_der(client, uri, mv, rules, reevaluate, cache_dir)
    except FileNotFoundError as err:
        der, source = math.nan, str(err)
    reference = _reference_champion(client, model_name, version, rules)
    champion_der = tag_float(reference) if reference is not None else math.nan
    action, reason = decide(der, champion_der, rules)
    if reference is not None and reference.tags.get("gate_set") != normalize_set(rules.gate_set):
        reason += f" (champion DER from another gate set: {reference.tags.get('gate_set')})"
    decision = Decision(
        model_name,
        version,
        action,
        der,
        reason,
        champion_version=str(reference.version) if reference is not None else None,
        champion_der=champion_der,
        der_source=source,
    )
    _apply(client, decision)
    return decision


def _apply(client: MlflowClient, decision: Decision) -> None:
    """Aliases and tags for a decision."""
    name, version = decision.model_name, decision.version
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if decision.action == "champion":
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "promoted", "true")
        client.set_model_version_tag(name, version, "promoted_at", now)
        challenger = get_alias(client, name, CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    elif decision.action == "challenger":
        client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in (
        ("gate_decision", decision.action),
        ("gate_reason", decision.reason[:4000]),
        ("gated_at", now),
    ):
        client.set_model_version_tag(name, version, key, value)


def registration_metrics(
    model_name: str,
    onnx_path: Path,
    gate_set: Path,
    der_gate: float | None = None,
    evaluate_now: bool = True,
) -> dict[str, float]:
    """``der_gate`` (given, or evaluated on ``gate_set``) and the benchmark latency of this very file."""
    from experiments.mlflow_utils import file_sha256
    from experiments.tracking import benchmark_latency

    metrics: dict[str, float] = {}
    if der_gate is not None:
        metrics["der_gate"] = der_gate
    elif evaluate_now and gate_set.is_dir():
        from experiments.evaluate import evaluate

        out = get_settings().reports_dir / "gate" / model_name / onnx_path.stem
        report = evaluate(model_name, gate_set, out, model_path=onnx_path)
        metrics["der_gate"] = float(report["total"]["collar_0"]["der"])
    latency = benchmark_latency(model_name)
    benchmarked = Path(str(latency.get("model", ""))) if latency else None
    same_file = benchmarked is not None and benchmarked.is_file()
    if latency and same_file and file_sha256(benchmarked) == file_sha256(onnx_path):
        metrics.update(latency_p50_ms=latency["p50_ms"], latency_p99_ms=latency["p99_ms"])
    return metrics
