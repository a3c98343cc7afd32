"""Arms: champion resolution order and atomic hot swap under concurrent requests (no Ray)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest

from flywheel.pretrained import SEGMENTATION_ONNX
from serving.arms import Arm, ArmSpec
from serving.champion import Champion, env_var, resolve


def retagged(src: Path, dst: Path, tag: str) -> Path:
    """The same model with different metadata: different bytes, hence a new version."""
    model = onnx.load(str(src))
    onnx.helper.set_model_props(
        model, {**{p.key: p.value for p in model.metadata_props}, "flywheel_build": tag}
    )
    onnx.save(model, str(dst))
    return dst


def test_resolution_order(tmp_path: Path, smoke_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = resolve("fast-cnn", model_path=smoke_onnx)
    assert pinned is not None and pinned.source == "config" and pinned.version.startswith("sha256:")
    monkeypatch.setenv(env_var("some-arm"), str(smoke_onnx))
    assert env_var("some-arm") == "FLYWHEEL_MODEL_PATH_SOME_ARM"
    from_env = resolve("some-arm", model_name="fast-cnn")
    assert from_env is not None and from_env.source == "env"
    assert resolve("no-such-arm-anywhere") is None  # no registry entry, no release file: unavailable


def test_hot_swap_never_fails_a_request(tmp_path: Path, smoke_onnx: Path, speech: np.ndarray) -> None:
    a = retagged(smoke_onnx, tmp_path / "a.onnx", "a")
    b = retagged(smoke_onnx, tmp_path / "b.onnx", "b")
    current = {"path": a}

    def resolver() -> Champion:
        return resolve("x", model_name="fast-cnn", model_path=current["path"])  # type: ignore[return-value]

    arm = Arm(ArmSpec(name="x"), resolver=resolver)
    assert arm.refresh() and not arm.refresh()  # unchanged champion: no reload
    v1 = arm.describe()["model_version"]
    clip = speech[: 5 * 16000]
    errors: list[BaseException] = []
    versions: set[str] = set()
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                versions.add(arm.diarize(clip)["model_version"])
            except BaseException as err:
                errors.append(err)

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    for target in (b, a, b):
        current["path"] = target
        assert arm.refresh()
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert arm.reloads == 3 and arm.describe()["model_version"] != v1
    assert len(versions) >= 1


def test_a_broken_new_champion_keeps_the_old_model(tmp_path: Path, smoke_onnx: Path) -> None:
    good = shutil.copy(smoke_onnx, tmp_path / "m.onnx")
    arm = Arm(ArmSpec(name="x", model_name="fast-cnn", model_path=str(good)))
    assert arm.refresh()
    version = arm.describe()["model_version"]
    Path(good).write_bytes(b"not an onnx model")
    assert not arm.refresh()
    assert arm.describe()["model_version"] == version and arm.available


def test_an_mlflow_outage_does_not_swap_the_champion_for_the_release_model(
    tmp_path: Path, smoke_onnx: Path
) -> None:
    """MLflow unreachable: the registry answers with the release model; the arm keeps its champion."""
    from dataclasses import replace

    a = retagged(smoke_onnx, tmp_path / "v3.onnx", "3")
    b = retagged(smoke_onnx, tmp_path / "v4.onnx", "4")
    mlflow_v3 = Champion("fast-cnn", "3", a, "mlflow")
    answers = iter(
        [
            mlflow_v3,
            Champion("fast-cnn", "release", smoke_onnx, "release"),
            replace(mlflow_v3, version="4", path=b),
        ]
    )
    arm = Arm(ArmSpec(name="fast-cnn"), resolver=lambda: next(answers))
    assert arm.refresh() and arm.describe()["model_version"] == "3"
    assert not arm.refresh()  # MLflow down: release offered, refused
    assert arm.describe()["model_version"] == "3" and arm.describe()["source"] == "mlflow"
    assert arm.refresh() and arm.describe()["model_version"] == "4"  # a new MLflow version still swaps


@pytest.mark.skipif(
    not SEGMENTATION_ONNX.exists(),
    reason="models/teacher/*.onnx missing: run `bash scripts/setup_teacher.sh`",
)
def test_teacher_arm_serves_the_pretrained_models(
    speech: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # no registry: release files
    from flywheel.config import get_settings

    get_settings.cache_clear()
    try:
        arm = Arm(ArmSpec.from_dict("teacher", {"threads": 1, "poll_s": 0}))
        assert arm.refresh() and arm.available
        assert arm.model.champion.path.name == "segmentation-3.0.onnx"
        out = arm.diarize(speech)
        assert out["model"] == "teacher" and out["segments"], out
    finally:
        get_settings.cache_clear()


def test_the_pipeline_settings_carried_by_the_model_win_over_params_yaml(
    tmp_path: Path, smoke_onnx: Path, params: dict
) -> None:
    """A hot-swapped champion runs as it was evaluated: its own settings, params.yaml only for old files."""
    from flywheel.onnx_model import OnnxSegmenter, stamp_pipeline
    from flywheel.systems import get_system
    from flywheel.systems.onnx_system import pipeline_settings

    # training/export.py stamps what params.yaml declares at export time
    assert OnnxSegmenter(smoke_onnx).metadata.pipeline == pipeline_settings(params["systems"]["fast-cnn"])
    yaml_threshold = params["systems"]["fast-cnn"]["threshold"]
    carried = stamp_pipeline(smoke_onnx, {"threshold": 0.33, "step_s": 2.5}, tmp_path / "carried.onnx")
    old = stamp_pipeline(
        smoke_onnx, {}, tmp_path / "old.onnx"
    )  # a file exported before the settings travelled
    system = get_system("fast-cnn", model_path=carried)
    assert (system.params.threshold, system.params.step_s, system.pipeline_source) == (0.33, 2.5, "model")
    assert (
        system.params.smoothing_s == params["systems"]["fast-cnn"]["smoothing_s"]
    )  # not carried: params.yaml
    fallback = get_system("fast-cnn", model_path=old)
    assert (fallback.params.threshold, fallback.pipeline_source) == (yaml_threshold, "params.yaml")
    assert get_system("fast-cnn", model_path=carried, threshold=0.7).params.threshold == 0.7  # explicit wins

    arm = Arm(ArmSpec(name="x"), resolver=lambda: resolve("x", model_name="fast-cnn", model_path=carried))
    assert arm.refresh() and arm.model.system.params.threshold == 0.33


def test_a_gated_champion_whose_file_changed_is_refused(
    tmp_path: Path, smoke_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The digest the gate evaluated is checked on the file the arm loads: a mismatch is refused loudly,
    the arm keeps its model, or (with none yet) falls back to the release model."""
    from registry.mlflow_utils import file_sha256

    good = retagged(smoke_onnx, tmp_path / "good.onnx", "good")
    bad = retagged(smoke_onnx, tmp_path / "bad.onnx", "bad")
    answers = iter(
        [
            Champion("fast-cnn", "3", good, "mlflow", sha256=file_sha256(good), pipeline={"threshold": 0.44}),
            Champion("fast-cnn", "4", bad, "mlflow", sha256=file_sha256(good)),  # not the gated file
        ]
    )
    arm = Arm(ArmSpec(name="fast-cnn"), resolver=lambda: next(answers))
    assert arm.refresh() and arm.model.system.params.threshold == 0.44  # the gate's settings
    with caplog.at_level("ERROR", logger="serving.arms"):
        assert not arm.refresh()
    assert arm.describe()["model_version"] == "3"
    assert any("REFUSED fast-cnn v4" in r.getMessage() for r in caplog.records)

    fresh = Arm(
        ArmSpec(name="fast-cnn"), resolver=lambda: Champion("fast-cnn", "4", bad, "mlflow", sha256="0" * 64)
    )
    assert fresh.refresh()
    assert (fresh.describe()["source"], fresh.describe()["model_version"][:7]) == ("release", "sha256:")
