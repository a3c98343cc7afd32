"""The promotion gate: the release rule, automated, and the only thing that moves the aliases.

For a registered version the gate (:func:`promote`):

1. downloads the version's ONNX file and takes its SHA-256 (the file it evaluates, not a tag);
2. evaluates it on the frozen gate set (``params.yaml: promotion.gate_set``, default
   ``data/real/confirm-real``) under the pipeline settings the model carries;
3. evaluates the current champion (the ``champion`` alias when it holds a valid gate record, else
   the last version the gate made champion) on the same files and computes the paired bootstrap of
   the per-file DER difference;
4. applies :class:`registry.gate_rules.GateRules` (absolute rule ``max_der`` / ``beta_max_der``,
   regression ``tolerance``, interval below 0);
5. writes its signed record on the version (:mod:`registry.gate`: decision, numbers, gate-set
   version, file digest, pipeline settings; per-file scores as the run artifact
   ``gate/v<version>.json``) and moves the aliases: ``champion``, ``challenger``; an alias that
   points at a version without a valid record (set by hand) is moved back to the last good version,
   or removed when there is none.

No ``der_gate`` tag is read: a number typed into the registry cannot promote anything.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from registry.gate import (
    Evaluator,
    GateEvaluation,
    GateRecord,
    UngatedVersion,
    evaluate_on_gate_set,
    gate_set_version,
    missing_set_message,
    normalize_set,
    rules_dict,
    servable_record,
)
from registry.gate_rules import Action, GateRules
from registry.models import (
    CHALLENGER,
    CHAMPION,
    client_for,
    download_version,
    get_alias,
    last_good_version,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from flywheel.metrics import PairedDifference

__all__ = ["Decision", "GateRules", "decide", "promote", "registration_metrics"]

log = logging.getLogger(__name__)


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
    der_source: str = "evaluated"
    interval: tuple[float, float] | None = None
    gate_set_version: str | None = None
    onnx_sha256: str | None = None
    alias_note: str = ""

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
            f"; champion v{self.champion_version} DER {self.champion_der:.4f} on the same files"
            if self.champion_version
            else "; no gated champion to compare with"
        )
        interval = (
            f", DER - champion {self.interval[0]:+.4f}..{self.interval[1]:+.4f}" if self.interval else ""
        )
        return (
            f"{self.model_name} v{self.version}: {verdict}: DER {self.der:.4f} ({self.der_source}"
            f"{', gate set ' + self.gate_set_version if self.gate_set_version else ''}){champ}{interval}: "
            f"{self.reason}{self.alias_note}"
        )


def decide(
    der: float, champion_der: float, rules: GateRules, difference: PairedDifference | None = None
) -> tuple[Action, str]:
    """The gate as a pure function (:meth:`GateRules.decide`): ``(action, reason)``."""
    return rules.decide(der, champion_der, difference)


def _reference_champion(client: MlflowClient, name: str, candidate: str) -> tuple[ModelVersion | None, str]:
    """The champion to compare with, and a note when the alias was not trustworthy.

    The ``champion`` alias counts only when the gate made that version champion; otherwise (set by
    hand, possibly on the candidate itself) the last good version is the reference.
    """
    champion = get_alias(client, name, CHAMPION)
    note = ""
    if champion is not None:
        try:
            servable_record(champion, allowed=frozenset({CHAMPION}))
            if str(champion.version) == candidate:
                return None, ""  # re-gating the gated champion itself: thresholds only
            return champion, ""
        except UngatedVersion as err:
            note = f" (alias {CHAMPION} -> v{champion.version} ignored: {err})"
    return last_good_version(client, name, exclude={candidate}), note


def _evaluate(
    client: MlflowClient,
    uri: str,
    mv: ModelVersion,
    rules: GateRules,
    evaluator: Evaluator,
    cache_dir: Path | None,
    expected_sha: str | None = None,
) -> tuple[GateEvaluation, str]:
    """Download ``mv`` (checked against ``expected_sha`` when given) and evaluate it on the gate set."""
    from registry.mlflow_utils import file_sha256

    path = download_version(client, mv, uri, cache_dir, expected_sha=expected_sha)
    sha = file_sha256(path)
    result = evaluator(mv.name, path, rules.gate_set)
    if result.onnx_sha256 != sha:
        result = replace(result, onnx_sha256=sha)
    return result, sha


def promote(
    model_name: str,
    version: str | int,
    *,
    tracking_uri: str | None = None,
    rules: GateRules | None = None,
    reevaluate: bool = False,
    cache_dir: Path | None = None,
    evaluator: Evaluator | None = None,
) -> Decision:
    """Run the gate on ``model_name`` version ``version``, write its record and move the aliases.

    ``reevaluate``: ignore the local evaluation cache. ``evaluator``: replaces
    :func:`registry.gate.evaluate_on_gate_set` (tests).

    Raises:
        registry.models.RegistryUnavailable: MLflow does not answer.
    """
    from flywheel.metrics import paired_bootstrap

    rules = rules or GateRules.from_params()
    if evaluator is None:

        def evaluator(name: str, path: Path, gate: Path) -> GateEvaluation:
            return evaluate_on_gate_set(name, path, gate, use_cache=not reevaluate)

    client, uri = client_for(tracking_uri)
    version = str(version)
    mv = client.get_model_version(model_name, version)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    reference, note = _reference_champion(client, model_name, version)
    record = GateRecord(
        model_name,
        version,
        "rejected",
        "",
        None,
        normalize_set(rules.gate_set),
        None,
        None,
        {},
        rules_dict(rules),
        now,
    )
    candidate: GateEvaluation | None = None
    der, champion_der, difference = math.nan, math.nan, None
    if not rules.gate_set.is_dir():
        action, reason = "rejected", missing_set_message(rules.gate_set)
    else:
        try:
            record.gate_set_version = gate_set_version(rules.gate_set)
            candidate, record.onnx_sha256 = _evaluate(client, uri, mv, rules, evaluator, cache_dir)
            record.pipeline, record.files, der = candidate.pipeline, len(candidate.rows), candidate.der
            if reference is not None:
                ref_record = servable_record(reference, allowed=frozenset({CHAMPION}))
                champ, _ = _evaluate(
                    client, uri, reference, rules, evaluator, cache_dir, expected_sha=ref_record.onnx_sha256
                )
                if champ.uris != candidate.uris:
                    raise ValueError("champion and candidate were scored on different files")
                champion_der = champ.der
                difference = paired_bootstrap(
                    champ.rows, candidate.rows, samples=rules.bootstrap_samples, confidence=rules.confidence
                )
            action, reason = rules.decide(der, champion_der, difference)
        except Exception as err:  # a file that does not load or evaluate is refused, with the reason
            log.error("gate: %s v%s could not be evaluated: %s", model_name, version, err)
            action, reason = "rejected", f"evaluation failed: {err}"
    record.decision, record.reason, record.der = action, reason + note, der
    if reference is not None:
        record.champion_version, record.champion_der = str(reference.version), champion_der
    if difference is not None:
        record.delta, record.interval = difference.delta, [difference.low, difference.high]
    decision = Decision(
        model_name,
        version,
        action,
        der,
        record.reason,
        champion_version=record.champion_version,
        champion_der=champion_der,
        interval=(difference.low, difference.high) if difference is not None else None,
        gate_set_version=record.gate_set_version,
        onnx_sha256=record.onnx_sha256,
    )
    _write_record(client, mv, record, candidate)
    decision.alias_note = _apply(client, decision)
    return decision


def _write_record(
    client: MlflowClient, mv: ModelVersion, record: GateRecord, evaluation: GateEvaluation | None
) -> None:
    """The signed record as version tags; the per-file scores as an artifact of the version's run."""
    for key, value in record.tags().items():
        client.set_model_version_tag(mv.name, mv.version, key, value)
    if evaluation is not None and mv.run_id:
        body = {"record": json.loads(record.payload()), "evaluation": evaluation.to_json()}
        try:
            client.log_text(mv.run_id, json.dumps(body, indent=2), f"gate/v{mv.version}.json")
        except Exception as err:  # the tags are the record; the artifact is for people
            log.warning("gate: could not log the gate artifact of %s v%s: %s", mv.name, mv.version, err)


def _apply(client: MlflowClient, decision: Decision) -> str:
    """Move the aliases for a decision; returns a note on any hand-set alias that was moved back."""
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
    else:
        client.set_model_version_tag(name, version, "promoted", "false")
    return repair_aliases(client, name)


def repair_aliases(client: MlflowClient, name: str) -> str:
    """Point ``champion`` / ``challenger`` only at versions the gate gave that alias.

    A ``champion`` alias on any other version (set by hand) moves back to the last good version
    (removed when there is none); such a ``challenger`` alias is removed. Returns what was done.
    """
    notes = []
    for alias, allowed in ((CHAMPION, frozenset({CHAMPION})), (CHALLENGER, frozenset({CHALLENGER}))):
        current = get_alias(client, name, alias)
        if current is None:
            continue
        try:
            servable_record(current, allowed=allowed)
            continue
        except UngatedVersion as err:
            reason = str(err)
        good = last_good_version(client, name, exclude={str(current.version)}) if alias == CHAMPION else None
        if good is not None:
            client.set_registered_model_alias(name, alias, str(good.version))
            notes.append(f"alias {alias} moved back from v{current.version} to last good v{good.version}")
        else:
            client.delete_registered_model_alias(name, alias)
            notes.append(f"alias {alias} removed from v{current.version} (no good version)")
        log.error(
            "gate: %s@%s pointed at v%s without the gate's consent (%s): %s",
            name,
            alias,
            current.version,
            reason,
            notes[-1],
        )
    return "".join(f"; {n}" for n in notes)


def registration_metrics(
    model_name: str,
    onnx_path: Path,
    gate_set: Path,
    der_gate: float | None = None,
    evaluate_now: bool = True,
) -> dict[str, float]:
    """``der_gate`` (given, or evaluated on ``gate_set``: informational, the gate evaluates for
    itself and shares the cache) and the benchmark latency of this very file."""
    from registry.mlflow_utils import file_sha256
    from registry.tracking import benchmark_latency

    metrics: dict[str, float] = {}
    if der_gate is not None:
        metrics["der_gate"] = der_gate
    elif evaluate_now and gate_set.is_dir():
        metrics["der_gate"] = evaluate_on_gate_set(model_name, onnx_path, gate_set).der
    latency = benchmark_latency(model_name)
    benchmarked = Path(str(latency.get("model", ""))) if latency else None
    same_file = benchmarked is not None and benchmarked.is_file()
    if latency and same_file and file_sha256(benchmarked) == file_sha256(onnx_path):
        metrics.update(latency_p50_ms=latency["p50_ms"], latency_p99_ms=latency["p99_ms"])
    return metrics
