"""Against a REAL ``mlflow server`` (one per session, free loopback port): CLI register/promote, champion
resolution, bootstrap, tracked training and evaluation; and the same jobs with MLflow down.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from flywheel.config import get_settings
from registry.mlflow_utils import file_sha256

pytestmark = pytest.mark.slow


@pytest.fixture
def smoke_gate(smoke_data: Path, params: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A params.yaml whose promotion gate is the smoke test set, with thresholds a 1-epoch model meets."""
    gate = smoke_data / "conversations" / "smoke" / "test"
    local = copy.deepcopy(params)
    local["promotion"] = {"gate_set": str(gate), "max_der": 1.5, "beta_max_der": 2.0, "tolerance": 0.01}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(local))
    monkeypatch.setenv("FLYWHEEL_PARAMS_FILE", str(path))
    get_settings.cache_clear()
    return gate


def use_uri(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    monkeypatch.setenv("FLYWHEEL_MLFLOW_TRACKING_URI", uri)
    get_settings.cache_clear()


def test_register_promote_resolve_via_cli(
    mlflow_server, smoke_onnx: Path, smoke_gate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.models import resolve_champion

    use_uri(monkeypatch, mlflow_server.url)
    runner = CliRunner()

    def version_of(output: str) -> str:
        match = re.search(r"registered fast-cnn version (\d+)", output)
        assert match, output
        return match.group(1)

    # register evaluates the model on the gate set; promote (the gate) evaluates it itself
    result = runner.invoke(app, ["register", "--model", "fast-cnn", "--onnx", str(smoke_onnx)])
    assert result.exit_code == 0, result.output
    v1 = version_of(result.output)
    result = runner.invoke(app, ["promote", "--model", "fast-cnn", "--version", v1])
    assert result.exit_code == 0, result.output
    assert "PROMOTED to champion" in result.output and "(evaluated, gate set sha256:" in result.output

    # a der_gate typed at registration is not what the gate uses: the same model is not better than
    # the champion (paired difference exactly 0), so it is refused whatever it claims
    result = runner.invoke(
        app, ["register", "-m", "fast-cnn", "--onnx", str(smoke_onnx), "--der-gate", "0.01"]
    )
    v2 = version_of(result.output)
    result = runner.invoke(app, ["promote", "-m", "fast-cnn", "-v", v2, "--reevaluate"])
    assert result.exit_code == 1 and "REFUSED" in result.output, result.output
    assert "not better than the champion" in result.output and "DER 0.0100" not in result.output
    assert f"champion v{v1}" in result.output

    ref = resolve_champion("fast-cnn", mlflow_server.url, cache_dir=tmp_path / "cache")
    assert (ref.source, ref.version) == ("mlflow", v1)
    assert file_sha256(ref.path) == file_sha256(smoke_onnx) and ref.der < 1.5
    assert ref.sha256 == file_sha256(smoke_onnx)


def test_server_lifecycle_is_idempotent(mlflow_server, tmp_path: Path) -> None:
    from registry.mlflow_server import ServerConfig, ServerError, start_server

    url = mlflow_server.url
    assert start_server(mlflow_server.cfg) == mlflow_server.proc.pid  # already up: nothing started
    with pytest.raises(ServerError, match="already answers"):  # a foreign server on the port
        start_server(ServerConfig(port=mlflow_server.cfg.port, root=tmp_path / "other"))
    cli = ["mlflow", "--port", str(mlflow_server.cfg.port), "--root", str(mlflow_server.cfg.root)]
    result = CliRunner().invoke(app, [*cli, "--no-bootstrap"])
    assert result.exit_code == 0, result.output
    assert url in result.output
    result = CliRunner().invoke(app, ["mlflow", "--root", str(tmp_path / "none"), "--stop"])
    assert result.exit_code == 0 and "no MLflow server running" in result.output


def test_bootstrap_against_server_is_idempotent(
    mlflow_server, smoke_onnx: Path, smoke_gate: Path, tmp_path: Path
) -> None:
    import onnx

    from registry.models import bootstrap_registry, client_for

    release = tmp_path / "release"
    release.mkdir()
    proto = onnx.load(str(smoke_onnx))
    proto.doc_string = f"release copy {tmp_path.name}"  # new bytes: a file the registry has not seen
    onnx.save(proto, str(release / "fast-cnn.onnx"))
    first = bootstrap_registry(mlflow_server.url, release_dir=release)
    client, _ = client_for(mlflow_server.url)
    count = len(client.search_model_versions("name='fast-cnn'"))
    second = bootstrap_registry(mlflow_server.url, release_dir=release)
    assert first == second and first["fast-cnn"] is not None and first["distilhubert"] is None
    assert len(client.search_model_versions("name='fast-cnn'")) == count
    mv = client.get_model_version("fast-cnn", first["fast-cnn"])
    assert mv.tags["origin"] == "release" and mv.tags["gate_decision"] in (
        "champion",
        "challenger",
        "rejected",
    )
    assert math.isfinite(float(mv.tags["der_gate"]))  # evaluated on the gate set (no JSON, no metadata)


def _tiny_recipe(params: dict) -> dict:
    local = copy.deepcopy(params)
    local["train"]["fast-cnn"]["smoke"].update(
        epochs=2, patience=2, train_hours=0.02, max_steps_per_epoch=1, dev_files=1, dev_thresholds=[0.5]
    )
    return local


def test_training_tracked_to_server(
    mlflow_server, smoke_data: Path, params: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from training.train import train

    use_uri(monkeypatch, mlflow_server.url)
    summary = train(
        "fast-cnn",
        "smoke",
        tmp_path / "ckpt",
        resume=False,
        params=_tiny_recipe(params),
        data_dir=smoke_data,
        track=True,
    )
    client = MlflowClient(tracking_uri=mlflow_server.url)
    runs = client.search_runs(
        [client.get_experiment_by_name("diarization").experiment_id], "tags.kind = 'train'", max_results=1
    )
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2" and "dataset_version" in run.data.tags
    history = client.get_metric_history(run.info.run_id, "dev_der")
    assert [m.step for m in history] == [1, 2]
    assert run.data.metrics["best_dev_der"] == pytest.approx(summary["best_dev_der"])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "onnx")] == ["onnx/fast-cnn.onnx"]
    assert any(a.path.startswith("plots/timeline_") for a in client.list_artifacts(run.info.run_id, "plots"))


def test_training_and_evaluation_finish_when_mlflow_is_down(
    dead_uri: str,
    smoke_data: Path,
    smoke_onnx: Path,
    params: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from training.train import train

    use_uri(monkeypatch, dead_uri)
    message = f"MLflow unreachable at {dead_uri}: nothing logged"
    summary = train(
        "fast-cnn",
        "smoke",
        tmp_path / "ckpt",
        resume=False,
        params=_tiny_recipe(params),
        data_dir=smoke_data,
        track=True,
    )
    assert summary["epochs"] == 2 and Path(summary["checkpoint"]).exists()
    assert message in capsys.readouterr().err

    test_set = smoke_data / "conversations" / "smoke" / "test"
    out = tmp_path / "eval"
    cmd = ["evaluate", "-s", "fast-cnn", "--model-path", str(smoke_onnx), "-t", str(test_set), "-o", str(out)]
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert message in result.output
    assert (out / "report.json").exists()


def test_evaluate_cli_logs_to_server(
    mlflow_server, smoke_data: Path, smoke_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    use_uri(monkeypatch, mlflow_server.url)
    test_set = smoke_data / "conversations" / "smoke" / "test"
    cmd = [
        "evaluate",
        "-s",
        "fast-cnn",
        "--model-path",
        str(smoke_onnx),
        "-t",
        str(test_set),
        "-o",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=mlflow_server.url)
    run = client.search_runs(
        [client.get_experiment_by_name("diarization").experiment_id], "tags.kind = 'evaluate'", max_results=1
    )[0]
    assert {"smoke-test/der_collar_0", "smoke-test/der_collar_0.25", "smoke-test/missed_collar_0"} <= set(
        run.data.metrics
    )
    assert run.data.tags["onnx_sha256"] == file_sha256(smoke_onnx)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"onnx", "rttm", "plots", "report.json"} <= artifacts
