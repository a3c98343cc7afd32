"""Model registry and promotion gate on a local SQLite store (no server): aliases, records, fallbacks.

The gate's evaluation is replaced by a table of per-file scores keyed by the file's SHA-256
(:func:`fake_evaluator`): these tests move files and aliases around, the real evaluation is tested
against a real server in ``test_gate_server.py``.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry.gate import GateEvaluation
from registry.mlflow_utils import file_sha256
from registry.models import (
    bootstrap_registry,
    client_for,
    get_alias,
    register,
    resolve_champion,
)
from registry.promote import Decision, GateRules, decide
from registry.promote import promote as run_promote

RULES = dict(max_der=0.20, beta_max_der=0.30, tolerance=0.01)


@pytest.fixture
def gate_set(tmp_path: Path) -> Path:
    path = tmp_path / "gate"
    path.mkdir()
    return path


@pytest.fixture
def rules(gate_set: Path) -> GateRules:
    return GateRules(**RULES, gate_set=gate_set)


TRUE_DER: dict[str, float] = {}  # sha256 -> the DER the fake evaluation finds
FILES = 3


def fake_evaluator(name: str, path: Path, gate: Path) -> GateEvaluation:
    """Three 100 s files, each with the file's DER (so a difference is all-or-nothing significant)."""
    from flywheel.metrics import DERBreakdown

    sha = file_sha256(path)
    der = TRUE_DER[sha]
    rows = [DERBreakdown(der, 0.0, 0.0, 100 * der, 100.0) for _ in range(FILES)]
    return GateEvaluation(sha, "sha256:test", [f"f{i}" for i in range(FILES)], rows, {"threshold": 0.5})


def promote(*args: object, **kwargs: object) -> Decision:
    """The gate with the fake evaluation."""
    return run_promote(*args, evaluator=fake_evaluator, **kwargs)


def fake_onnx(tmp_path: Path, tag: str) -> Path:
    """Registry tests only move files around: any bytes will do."""
    path = tmp_path / f"model-{tag}.onnx"
    path.write_bytes(f"onnx {tag}".encode() * 100)
    return path


def add_version(
    uri: str, tmp_path: Path, der: float, gate_set: Path, tag: str = "", claimed: float | None = None
) -> str:
    """A version whose file evaluates to ``der``; ``claimed``: the der_gate typed at registration."""
    path = fake_onnx(tmp_path, tag or str(der))
    TRUE_DER[file_sha256(path)] = der
    return register(
        "fast-cnn",
        path,
        {"der_gate": der if claimed is None else claimed, "latency_p50_ms": 3.0, "latency_p99_ms": 5.0},
        dataset_version="data/conversations/full@abc",
        commit="deadbeef",
        gate_set=gate_set,
        tracking_uri=uri,
    )


@pytest.mark.parametrize(
    ("der", "champion_der", "action"),
    [
        (0.15, math.nan, "champion"),
        (0.20, math.nan, "champion"),
        (0.25, math.nan, "challenger"),
        (0.30, 0.10, "challenger"),
        (0.31, math.nan, "rejected"),
        (math.nan, math.nan, "rejected"),
        (0.15, 0.10, "rejected"),  # regression beyond tolerance
        (0.105, 0.10, "champion"),  # within tolerance
        (0.05, 0.10, "champion"),
    ],
)
def test_decide(der: float, champion_der: float, action: str) -> None:
    assert decide(der, champion_der, GateRules(**RULES))[0] == action


def test_register_tags_every_version(sqlite_uri: str, tmp_path: Path, gate_set: Path) -> None:
    version = add_version(sqlite_uri, tmp_path, 0.12, gate_set)
    client, _ = client_for(sqlite_uri)
    mv = client.get_model_version("fast-cnn", version)
    for key in ("der_gate", "latency_p50_ms", "latency_p99_ms", "dataset_version", "git_commit", "gate_set"):
        assert key in mv.tags, key
    assert float(mv.tags["der_gate"]) == pytest.approx(0.12)
    assert mv.tags["git_commit"] == "deadbeef"
    assert mv.tags["onnx_sha256"] == file_sha256(tmp_path / "model-0.12.onnx")
    assert version == "1" and add_version(sqlite_uri, tmp_path, 0.13, gate_set) == "2"


def test_promotion_passes_and_champion_resolves(
    sqlite_uri: str, tmp_path: Path, gate_set: Path, rules: GateRules
) -> None:
    version = add_version(sqlite_uri, tmp_path, 0.15, gate_set)
    decision = promote("fast-cnn", version, tracking_uri=sqlite_uri, rules=rules)
    assert decision.action == "champion" and not decision.refused
    assert decision.der == pytest.approx(0.15) and decision.der_source == "evaluated"
    client, _ = client_for(sqlite_uri)
    assert str(get_alias(client, "fast-cnn", "champion").version) == version
    assert client.get_model_version("fast-cnn", version).tags["promoted"] == "true"

    ref = resolve_champion("fast-cnn", sqlite_uri, cache_dir=tmp_path / "cache")
    assert (ref.source, ref.version, ref.der) == ("mlflow", version, pytest.approx(0.15))
    assert file_sha256(ref.path) == file_sha256(tmp_path / "model-0.15.onnx")
    again = resolve_champion("fast-cnn", sqlite_uri, cache_dir=tmp_path / "cache")
    assert again.path == ref.path  # served from the cache


def test_refused_on_threshold_and_beta_challenger(
    sqlite_uri: str, tmp_path: Path, gate_set: Path, rules: GateRules
) -> None:
    client, _ = client_for(sqlite_uri)
    bad = add_version(sqlite_uri, tmp_path, 0.35, gate_set)
    decision = promote("fast-cnn", bad, tracking_uri=sqlite_uri, rules=rules)
    assert decision.refused and "beta_max_der" in decision.reason
    assert get_alias(client, "fast-cnn", "champion") is None
    assert get_alias(client, "fast-cnn", "challenger") is None

    beta = add_version(sqlite_uri, tmp_path, 0.25, gate_set)
    decision = promote("fast-cnn", beta, tracking_uri=sqlite_uri, rules=rules)
    assert decision.action == "challenger" and not decision.refused
    assert str(get_alias(client, "fast-cnn", "challenger").version) == beta
    assert get_alias(client, "fast-cnn", "champion") is None
    assert client.get_model_version("fast-cnn", beta).tags["gate_decision"] == "challenger"


def test_refused_on_regression_vs_champion(
    sqlite_uri: str, tmp_path: Path, gate_set: Path, rules: GateRules
) -> None:
    first = add_version(sqlite_uri, tmp_path, 0.10, gate_set)
    assert promote("fast-cnn", first, tracking_uri=sqlite_uri, rules=rules).action == "champion"
    worse = add_version(sqlite_uri, tmp_path, 0.12, gate_set)  # under max_der, but 0.12 > 0.10 + 0.01
    decision = promote("fast-cnn", worse, tracking_uri=sqlite_uri, rules=rules)
    assert decision.refused and "regression" in decision.reason
    assert decision.champion_version == first and decision.champion_der == pytest.approx(0.10)
    client, _ = client_for(sqlite_uri)
    assert str(get_alias(client, "fast-cnn", "champion").version) == first
    within = add_version(sqlite_uri, tmp_path, 0.105, gate_set)  # within tolerance, but not better
    decision = promote("fast-cnn", within, tracking_uri=sqlite_uri, rules=rules)
    assert decision.refused and "not better than the champion" in decision.reason
    better = add_version(sqlite_uri, tmp_path, 0.09, gate_set)
    decision = promote("fast-cnn", better, tracking_uri=sqlite_uri, rules=rules)
    assert decision.action == "champion" and decision.interval == pytest.approx((-0.01, -0.01))
    assert str(get_alias(client, "fast-cnn", "champion").version) == better


def test_alias_set_by_hand_to_failing_version_falls_back_to_last_good(
    sqlite_uri: str, tmp_path: Path, gate_set: Path, rules: GateRules, caplog: pytest.LogCaptureFixture
) -> None:
    good = add_version(sqlite_uri, tmp_path, 0.15, gate_set)
    promote("fast-cnn", good, tracking_uri=sqlite_uri, rules=rules)
    bad = add_version(sqlite_uri, tmp_path, 0.45, gate_set, claimed=0.15)  # der_gate typed by hand
    client, _ = client_for(sqlite_uri)
    client.set_registered_model_alias("fast-cnn", "champion", bad)  # what a click in the UI does

    with caplog.at_level(logging.ERROR, logger="registry.models"):
        ref = resolve_champion("fast-cnn", sqlite_uri, cache_dir=tmp_path / "cache")
    assert (ref.source, ref.version) == ("mlflow", good)
    assert file_sha256(ref.path) == file_sha256(tmp_path / "model-0.15.onnx")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("NOT serving" in m and f"version {bad}" in m and "no gate record" in m for m in errors), errors

    decision = promote("fast-cnn", bad, tracking_uri=sqlite_uri, rules=rules)  # the gate on it
    assert decision.refused and f"moved back from v{bad} to last good v{good}" in decision.summary()
    assert str(get_alias(client, "fast-cnn", "champion").version) == good
    assert "no current champion" not in decision.summary()


def test_release_fallback_when_mlflow_unreachable(dead_uri: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="release model"):
        resolve_champion("fast-cnn", dead_uri, release_dir=release)
    fake = fake_onnx(release, "r")
    fake.rename(release / "fast-cnn.onnx")
    (release / "fast-cnn.json").write_text(json.dumps({"der_gate": 0.17}))
    ref = resolve_champion("fast-cnn", dead_uri, release_dir=release)
    assert (ref.source, ref.version, ref.der) == ("release", "release", pytest.approx(0.17))
    assert ref.path == release / "fast-cnn.onnx"
    assert time.perf_counter() - started < 10  # short probe, no retries


def test_an_outage_warns_once_not_once_per_poll(
    dead_uri: str,
    sqlite_uri: str,
    tmp_path: Path,
    gate_set: Path,
    rules: GateRules,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every poll of a replica resolves its champion: during an MLflow outage only the first says so;
    once MLflow has served a gated version again, the next outage is news again."""
    import logging

    release = tmp_path / "release"
    release.mkdir()
    fake_onnx(release, "r").rename(release / "fast-cnn.onnx")
    fallback = "serving the release model"
    with caplog.at_level(logging.WARNING, logger="registry.models"):
        for _ in range(5):
            assert resolve_champion("fast-cnn", dead_uri, release_dir=release).source == "release"
        assert sum(fallback in r.getMessage() for r in caplog.records) == 1
        version = add_version(sqlite_uri, tmp_path, 0.15, gate_set)
        assert promote("fast-cnn", version, tracking_uri=sqlite_uri, rules=rules).action == "champion"
        assert resolve_champion("fast-cnn", sqlite_uri, cache_dir=tmp_path / "c").source == "mlflow"
        resolve_champion("fast-cnn", dead_uri, release_dir=release)
        assert sum(fallback in r.getMessage() for r in caplog.records) == 2


def test_release_fallback_when_registry_empty(sqlite_uri: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    fake_onnx(release, "r").rename(release / "fast-cnn.onnx")
    assert resolve_champion("fast-cnn", sqlite_uri, release_dir=release).source == "release"


def test_bootstrap_is_idempotent(sqlite_uri: str, tmp_path: Path, gate_set: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    fake_onnx(release, "r").rename(release / "fast-cnn.onnx")
    (release / "fast-cnn.json").write_text(
        json.dumps(
            {"der_gate": 0.18, "gate_set": str(gate_set), "latency_p50_ms": 2.5, "latency_p99_ms": 4.0}
        )
    )
    TRUE_DER[file_sha256(release / "fast-cnn.onnx")] = 0.18
    kw = dict(release_dir=release, gate_set=gate_set, evaluator=fake_evaluator)
    first = bootstrap_registry(sqlite_uri, **kw)
    second = bootstrap_registry(sqlite_uri, **kw)
    assert first == second == {"fast-cnn": "1", "distilhubert": None}
    client, _ = client_for(sqlite_uri)
    versions = client.search_model_versions("name='fast-cnn'")
    assert len(versions) == 1
    assert versions[0].tags["origin"] == "release" and versions[0].tags["latency_p99_ms"] == "4"
    assert str(get_alias(client, "fast-cnn", "champion").version) == "1"
    assert resolve_champion("fast-cnn", sqlite_uri, cache_dir=tmp_path / "c").source == "mlflow"


def test_resolve_champion_never_imports_torch(dead_uri: str, sqlite_uri: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    fake_onnx(release, "r").rename(release / "fast-cnn.onnx")
    script = tmp_path / "serving_side.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from registry.models import resolve_champion\n"
        f"for uri in ({dead_uri!r}, {sqlite_uri!r}):  # MLflow down, then an empty registry\n"
        f"    ref = resolve_champion('fast-cnn', uri, release_dir=Path({str(release)!r}))\n"
        "    assert ref.source == 'release'\n"
        "assert 'mlflow' in sys.modules\n"
        "assert 'torch' not in sys.modules, 'torch imported by resolve_champion'\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_both_arms_bootstrap_with_their_own_gate(sqlite_uri: str, tmp_path: Path, gate_set: Path) -> None:
    """The DistilHuBERT release registers as `distilhubert`; its DER (above beta_max_der) keeps it out
    of `champion`, so serving falls back to its release file while Fast CNN's version is champion."""
    release = tmp_path / "release"
    release.mkdir()
    for name, der in (("fast-cnn", 0.18), ("distilhubert", 0.47)):
        fake_onnx(release, name).rename(release / f"{name}.onnx")
        TRUE_DER[file_sha256(release / f"{name}.onnx")] = der
        (release / f"{name}.json").write_text(
            json.dumps({"der_gate": der, "gate_set": str(gate_set), "latency_p50_ms": 1, "latency_p99_ms": 2})
        )
    assert bootstrap_registry(
        sqlite_uri, release_dir=release, gate_set=gate_set, evaluator=fake_evaluator
    ) == {
        "fast-cnn": "1",
        "distilhubert": "1",
    }
    client, _ = client_for(sqlite_uri)
    assert get_alias(client, "distilhubert", "champion") is None
    assert float(client.get_model_version("distilhubert", "1").tags["der_gate"]) == pytest.approx(0.47)
    ref = resolve_champion("distilhubert", sqlite_uri, release_dir=release, cache_dir=tmp_path / "c")
    assert ref.source == "release" and ref.path == release / "distilhubert.onnx"
