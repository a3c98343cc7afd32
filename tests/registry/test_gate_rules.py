"""GateRules at its boundaries, and the gate record: what verifies and what is refused (no server)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from flywheel.config import REPO_ROOT
from flywheel.metrics import PairedDifference
from registry.gate import (
    GateRecord,
    UngatedVersion,
    gate_key,
    gate_set_version,
    read_record,
    servable_record,
)
from registry.gate_rules import GateRules, promotion_params
from registry.mlflow_utils import file_sha256

RULES = GateRules(max_der=0.20, beta_max_der=0.30, tolerance=0.01, gate_set=Path("/nowhere"))


def diff(low: float, high: float) -> PairedDifference:
    return PairedDifference(
        der_a=0.15, der_b=0.15 + (low + high) / 2, low=low, high=high, confidence=0.95, b_better_share=0.5
    )


@pytest.mark.parametrize(
    ("der", "action"),
    [
        (0.0, "champion"),
        (0.20, "champion"),  # max_der is inclusive
        (0.2000001, "challenger"),
        (0.25, "challenger"),
        (0.30, "challenger"),  # beta_max_der is inclusive
        (0.3000001, "rejected"),
        (0.9, "rejected"),
        (math.nan, "rejected"),
    ],
)
def test_absolute_rule_boundaries(der: float, action: str) -> None:
    assert RULES.decide(der)[0] == action
    assert RULES.passes(der) is (action == "champion")


def test_comparison_with_the_champion() -> None:
    # regression beyond tolerance, whatever the interval
    assert RULES.decide(0.17, 0.15, diff(-0.05, 0.05))[0] == "rejected"
    # within tolerance but the interval reaches 0: not better -> refused (the release rule)
    action, reason = RULES.decide(0.15, 0.15, diff(-0.01, 0.0))
    assert action == "rejected" and "not better than the champion" in reason
    # interval entirely below 0: champion
    assert RULES.decide(0.14, 0.15, diff(-0.02, -0.001))[0] == "champion"
    # without the bootstrap requirement, tolerance alone decides
    lax = GateRules(max_der=0.20, beta_max_der=0.30, tolerance=0.01, require_better=False)
    assert lax.decide(0.155, 0.15, diff(-0.01, 0.02))[0] == "champion"
    # a beta candidate stays challenger whatever the champion
    assert RULES.decide(0.25, 0.10, diff(0.1, 0.2))[0] == "challenger"


def test_rules_read_from_params_yaml() -> None:
    rules = GateRules.from_params()
    assert (rules.max_der, rules.beta_max_der, rules.tolerance) == (0.20, 0.30, 0.01)
    assert rules.gate_set == REPO_ROOT / "data" / "real" / "confirm-real"
    assert rules.require_better and rules.confidence == 0.95
    partial = promotion_params({"promotion": {"max_der": 0.1, "bootstrap": {"samples": 10}}})
    assert partial["beta_max_der"] == 0.30 and partial["bootstrap"] == {
        "samples": 10,
        "confidence": 0.95,
        "require_better": True,
    }
    with pytest.raises(ValueError, match="max_der <= beta_max_der"):
        GateRules(max_der=0.4, beta_max_der=0.3)


def test_one_definition_everywhere() -> None:
    """promote, the A/B report and the CLI read the same class; nothing else defines the rules."""
    import registry.gate_rules as gr
    import registry.promote as promote

    assert promote.GateRules is gr.GateRules
    hits = []
    for path in [p for pkg in ("experiments", "registry", "serving") for p in REPO_ROOT.glob(f"{pkg}/*.py")]:
        text = path.read_text()
        if path.name != "gate_rules.py" and ("beta_max_der =" in text or "class GateRules" in text):
            hits.append(path.name)
    assert hits == []


# ---------------------------------------------------------------- the record


def record(**changes: object) -> GateRecord:
    base = dict(
        model_name="fast-cnn",
        version="3",
        decision="champion",
        reason="ok",
        der=0.15,
        gate_set="data/real/confirm-real",
        gate_set_version="sha256:abc",
        onnx_sha256="0" * 64,
        pipeline={"threshold": 0.5},
        rules={"max_der": 0.2},
        gated_at="2025-01-01T00:00:00+00:00",
    )
    return GateRecord(**{**base, **changes})


def version(tags: dict[str, str], name: str = "fast-cnn", number: str = "3") -> SimpleNamespace:
    return SimpleNamespace(name=name, version=number, tags=tags)


def test_record_verifies_and_binds_version_and_file(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model bytes")
    rec = record(onnx_sha256=file_sha256(model))
    tags = rec.tags()
    assert read_record(version(tags)) == GateRecord.from_payload(tags["gate_record"])
    assert servable_record(version(tags), model).der == pytest.approx(0.15)
    # the same record copied onto another version: refused
    with pytest.raises(UngatedVersion, match="written for fast-cnn v3"):
        read_record(version(tags, number="4"))
    # a number edited in the record: the signature no longer verifies
    forged = dict(tags, gate_record=tags["gate_record"].replace('"der":0.15', '"der":0.1'))
    with pytest.raises(UngatedVersion, match="signature does not verify"):
        read_record(version(forged))
    # another file under the record
    model.write_bytes(b"tampered bytes")
    with pytest.raises(UngatedVersion, match="tampered"):
        servable_record(version(tags), model)
    # a refusal is a valid record but not servable
    with pytest.raises(UngatedVersion, match="decided 'rejected'"):
        servable_record(version(record(decision="rejected").tags()))


def test_hand_typed_tags_are_not_a_record() -> None:
    hand = {"der_gate": "0.15", "gate_decision": "champion", "promoted": "true"}
    with pytest.raises(UngatedVersion, match=r"no gate record .*der_gate tag was not written by the gate"):
        servable_record(version(hand))
    rec = record()
    typed = {**hand, "gate_record": rec.payload(), "gate_signature": "f" * 64}  # a guessed signature
    with pytest.raises(UngatedVersion, match="signature"):
        servable_record(version(typed))


def test_gate_key_is_generated_once_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_RUNTIME_DIR", str(tmp_path / "rt"))
    key = gate_key()
    path = tmp_path / "rt" / "gate" / "gate.key"
    assert path.stat().st_mode & 0o777 == 0o600 and gate_key() == key and len(key) == 64
    monkeypatch.setenv("FLYWHEEL_GATE_KEY", "deployment-secret")
    assert gate_key() == b"deployment-secret"
    assert record().signature(b"a") != record().signature(b"b")


def test_gate_set_version_is_a_content_hash(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "a.rttm").write_text("SPEAKER a 1 0.0 1.0 <NA> <NA> s1 <NA> <NA>\n")
    first = gate_set_version(gate)
    assert first.startswith("sha256:") and gate_set_version(gate) == first
    copy = shutil.copytree(gate, tmp_path / "copy")
    assert gate_set_version(copy) == first  # same content, another place
    (gate / "a.rttm").write_text("SPEAKER a 1 0.0 2.0 <NA> <NA> s1 <NA> <NA>\n")
    assert gate_set_version(gate) != first
    with pytest.raises(FileNotFoundError, match="flywheel data real"):
        gate_set_version(tmp_path / "missing")
