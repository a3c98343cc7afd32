"""The gate against a REAL ``mlflow server``: what serving loads is only what the gate wrote.

The gate set is a temporary one of three short smoke conversations (real evaluation, seconds); the
thresholds are those a one-epoch smoke model meets (the 0.20 / 0.30 boundaries are tested in
``test_gate_rules.py``). Each test registers its own model name, so tests share the server without
seeing each other's versions.
"""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from pathlib import Path

import onnx
import pytest
import yaml
from service_fixtures import copy_smoke_gate_set
from typer.testing import CliRunner

from flywheel.config import get_settings
from flywheel.onnx_model import OnnxSegmenter, stamp_pipeline
from flywheel.systems.onnx_system import pipeline_settings
from registry.mlflow_utils import file_sha256

pytestmark = pytest.mark.slow

CARRIED = {"threshold": 0.42, "smoothing_s": 0.2, "step_s": 2.0}  # none of them params.yaml's


@pytest.fixture
def tiny_gate(smoke_data: Path, params: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A three-file gate set (two smoke test files and the confirm one) and a params.yaml using it."""
    gate = copy_smoke_gate_set(smoke_data, tmp_path / "gate-set")
    local = copy.deepcopy(params)
    local["promotion"] = {
        "gate_set": str(gate),
        "max_der": 1.5,
        "beta_max_der": 2.0,
        "tolerance": 0.01,
        "bootstrap": {"samples": 200},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(local))
    monkeypatch.setenv("FLYWHEEL_PARAMS_FILE", str(path))
    get_settings.cache_clear()
    return gate


@pytest.fixture
def stamped(smoke_onnx: Path, params: dict, tmp_path: Path) -> Path:
    """The smoke model carrying pipeline settings that differ from params.yaml's."""
    pipeline = {**pipeline_settings(params["systems"]["fast-cnn"]), **CARRIED}
    return stamp_pipeline(smoke_onnx, pipeline, tmp_path / "stamped.onnx")


def other_bytes(src: Path, dst: Path, tag: str) -> Path:
    """The same model and metadata with other bytes (a new file, identical outputs)."""
    proto = onnx.load(str(src))
    proto.doc_string = f"copy {tag}"
    onnx.save(proto, str(dst))
    return dst


def unique_name() -> str:
    return f"fast-cnn-gate-{uuid.uuid4().hex[:8]}"


def register_file(url: str, name: str, path: Path, **metrics: float) -> str:
    from registry.models import register

    return register(name, path, dict(metrics), dataset_version="test@0", commit="test", tracking_uri=url)


def test_a_gated_version_is_served_with_its_carried_pipeline(
    mlflow_server, stamped: Path, tiny_gate: Path, tmp_path: Path
) -> None:
    from registry.models import client_for
    from registry.promote import promote
    from serving.arms import Arm, ArmSpec

    url, name = mlflow_server.url, unique_name()
    v1 = register_file(url, name, stamped)
    client, _ = client_for(url)
    assert json.loads(client.get_model_version(name, v1).tags["pipeline"])["threshold"] == 0.42
    decision = promote(name, v1, tracking_uri=url)
    assert decision.action == "champion", decision.summary()
    assert decision.onnx_sha256 == file_sha256(stamped) and decision.gate_set_version.startswith("sha256:")

    mv = client.get_model_version(name, v1)
    record = json.loads(mv.tags["gate_record"])
    assert record["decision"] == "champion" and record["onnx_sha256"] == file_sha256(stamped)
    assert record["pipeline"]["threshold"] == 0.42 and record["files"] == 3
    assert record["gate_set_version"] == mv.tags["gate_set_version"]
    local = client.download_artifacts(mv.run_id, f"gate/v{v1}.json", str(tmp_path))
    artifact = json.loads(Path(local).read_text())
    assert len(artifact["evaluation"]["files"]) == 3

    arm = Arm(ArmSpec(name="x", model_name=name, tracking_uri=url, poll_s=0))
    assert arm.refresh()
    described = arm.describe()
    assert (described["source"], described["model_version"]) == ("mlflow", v1)
    params = arm.model.system.params
    assert (params.threshold, params.smoothing_s, params.step_s) == (0.42, 0.2, 2.0)  # not params.yaml's
    assert arm.model.champion.sha256 == file_sha256(stamped)


def test_hand_set_alias_and_typed_der_gate_are_refused_and_promote_moves_the_alias_back(
    mlflow_server, stamped: Path, tiny_gate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hostile case: champion pointed by hand at an ungated version whose der_gate (0.15) and
    even a copy of the good version's gate record were typed in by hand."""
    from cli.main import app
    from registry.models import client_for, get_alias
    from registry.promote import promote
    from serving import app_logging
    from serving.arms import Arm, ArmSpec

    url, name = mlflow_server.url, unique_name()
    good = register_file(url, name, stamped)
    assert promote(name, good, tracking_uri=url).action == "champion"
    hostile = register_file(url, name, other_bytes(stamped, tmp_path / "hostile.onnx", "h"), der_gate=0.15)
    client, _ = client_for(url)
    good_tags = client.get_model_version(name, good).tags
    for key, value in {
        "der_gate": "0.15",
        "gate_decision": "champion",
        "promoted": "true",
        "gate_record": good_tags["gate_record"],  # a valid record, for another version
        "gate_signature": good_tags["gate_signature"],
    }.items():
        client.set_model_version_tag(name, hostile, key, value)
    client.set_registered_model_alias(name, "champion", hostile)  # what a click in the UI does

    log_file = app_logging.configure(tmp_path / "logs", role="arm-test")
    arm = Arm(ArmSpec(name="x", model_name=name, tracking_uri=url, poll_s=0))
    assert arm.refresh()
    assert (arm.describe()["source"], arm.describe()["model_version"]) == ("mlflow", good)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    loud = [rec for rec in lines if rec["level"] == "ERROR" and "REFUSED" in rec["msg"]]
    assert loud and f"version {hostile}" in loud[-1]["msg"] and "NOT serving" in loud[-1]["msg"]
    assert f"written for {name} v{good}" in loud[-1]["msg"] and loud[-1]["role"] == "arm-test"

    monkeypatch.setenv("FLYWHEEL_MLFLOW_TRACKING_URI", url)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["promote", "-m", name, "-v", hostile])
    assert result.exit_code == 1 and "REFUSED" in result.output, result.output
    assert f"moved back from v{hostile} to last good v{good}" in result.output
    assert "no gated champion" not in result.output and f"champion v{good}" in result.output
    assert str(get_alias(client, name, "champion").version) == good
    record = json.loads(client.get_model_version(name, hostile).tags["gate_record"])
    assert record["decision"] == "rejected" and record["version"] == hostile  # the gate's own, now


def test_a_tampered_file_under_a_gated_version_is_refused(
    mlflow_server, stamped: Path, tiny_gate: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from registry.models import client_for, resolve_champion
    from registry.promote import promote

    url, name = mlflow_server.url, unique_name()
    version = register_file(url, name, stamped)
    assert promote(name, version, tracking_uri=url).action == "champion"
    release = tmp_path / "release"
    release.mkdir()
    shutil.copy(stamped, release / f"{name}.onnx")

    # a tampered local cache is replaced by the gated file
    cache = tmp_path / "cache"
    ref = resolve_champion(name, url, cache_dir=cache, release_dir=release)
    assert ref.source == "mlflow" and ref.sha256 == file_sha256(stamped)
    other_bytes(stamped, ref.path, "cache")
    again = resolve_champion(name, url, cache_dir=cache, release_dir=release)
    assert again.source == "mlflow" and file_sha256(again.path) == file_sha256(stamped)

    # the stored artifact replaced on the server, its onnx_sha256 tag edited to match: refused
    client, _ = client_for(url)
    mv = client.get_model_version(name, version)
    stored = [p for p in Path(mlflow_server.cfg.root).rglob("*.onnx") if mv.run_id in str(p)]
    assert len(stored) == 1
    other_bytes(stamped, stored[0], "tampered")
    client.set_model_version_tag(name, version, "onnx_sha256", file_sha256(stored[0]))
    with caplog.at_level("ERROR", logger="registry.models"):
        ref = resolve_champion(name, url, cache_dir=tmp_path / "fresh", release_dir=release)
    assert (ref.source, ref.version) == ("release", "release")
    assert any("REFUSED" in r.getMessage() and "tampered" in r.getMessage() for r in caplog.records)


def test_carried_settings_are_in_the_onnx_metadata(stamped: Path) -> None:
    assert OnnxSegmenter(stamped).metadata.pipeline["threshold"] == 0.42
