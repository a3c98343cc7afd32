"""``flywheel retrain`` decisions that need no training: when to do nothing, what counts as an
unfinished run, how a dataset version is committed and found again. The whole loop (training,
MLflow, the gate, serving) is ``tests/e2e/test_flywheel_e2e.py``."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from training.retrain import STAGES, retrain, unfinished_stages
from training.retrain_stages import RetrainConfig
from training.versioning import commit_lock, dataset_commit, out_hash


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def workspace(tmp_path: Path, params: dict) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    local = copy.deepcopy(params)
    local["retrain"]["min_new_items"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(local))
    git(root, "init", "--quiet")
    git(root, "config", "user.email", "t@flywheel.test")
    git(root, "config", "user.name", "t")
    return root


def write_manifest(root: Path, items: list[str]) -> None:
    folder = root / "data" / "reviewed"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        {"key": f"{i}@0", "item_id": i, "annotation_id": n, "reviewed_at": "t", "segments": []}
        for n, i in enumerate(items)
    ]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_config_comes_from_params_and_names_an_existing_recipe(params: dict) -> None:
    cfg = RetrainConfig.from_params(params)
    assert (cfg.model_type, cfg.recipe, cfg.model_name) == ("fast-cnn", "retrain", "fast-cnn")
    assert cfg.min_new_items == params["retrain"]["min_new_items"]
    bad = {**params, "retrain": {**params["retrain"], "recipe": "nope"}}
    with pytest.raises(KeyError, match=r"not a recipe of distill\.fast-cnn"):
        RetrainConfig.from_params(bad)


def test_nothing_to_do_writes_nothing(workspace: Path) -> None:
    report = retrain(workspace)
    assert report.action == "nothing" and "flywheel label pull" in report.message
    write_manifest(workspace, ["a", "b"])  # 2 reviewed items, min_new_items 3
    before = sorted(p.relative_to(workspace) for p in workspace.rglob("*") if ".git" not in p.parts)
    result = CliRunner().invoke(app, ["retrain", "--root", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "2 new reviewed item(s) since dataset version (none yet)" in result.output
    assert "min_new_items is 3: nothing to do" in result.output
    assert sorted(p.relative_to(workspace) for p in workspace.rglob("*") if ".git" not in p.parts) == before
    assert git(workspace, "rev-list", "--all") == ""  # no commit


def test_unfinished_stages_are_the_ones_that_did_not_finish() -> None:
    lock = {s: {} for s in STAGES[:4]}  # gate and evaluate never recorded
    status = {
        "reviewed-dataset": [{"changed deps": {"data/reviewed/manifest.jsonl": "modified"}}],  # new reviews
        "retrain-distill": [{"changed deps": {"training/distill.py": "modified"}}],  # code changed only
        "retrain-export": [{"changed outs": {"models/retrain/fast-cnn.onnx": "deleted"}}],  # stopped
        "retrain-evaluate": [{"changed deps": {"models/retrain/fast-cnn.onnx": "modified"}}],
        "real": [{"changed deps": {"data/inventory/full": "modified"}}],  # not a retrain stage
    }
    assert unfinished_stages(status, lock) == ["retrain-export", "retrain-evaluate"]
    assert unfinished_stages({}, lock) == []


def test_dataset_version_commit_holds_dvc_lock_alone_and_is_found_again(workspace: Path) -> None:
    lock = {
        "schema": "2.0",
        "stages": {"reviewed-dataset": {"outs": [{"path": "data/reviewed-set", "md5": "abc123.dir"}]}},
    }
    (workspace / "dvc.lock").write_text(yaml.safe_dump(lock))
    (workspace / "notes.txt").write_text("someone else's work")
    git(workspace, "add", "notes.txt")  # staged by someone else: must stay out of the commit
    first = commit_lock(workspace, "Dataset version data/reviewed-set@abc123")
    assert first and git(workspace, "show", "--name-only", "--format=", first) == "dvc.lock"
    assert git(workspace, "diff", "--cached", "--name-only") == "notes.txt"
    assert commit_lock(workspace, "again") is None  # dvc.lock unchanged: no empty commit
    assert out_hash(workspace, "data/reviewed-set") == "abc123"
    lock["stages"]["reviewed-pool"] = {"deps": [{"path": "data/reviewed-set", "md5": "abc123.dir"}]}
    (workspace / "dvc.lock").write_text(yaml.safe_dump(lock))
    later = commit_lock(workspace, "Retrained")
    assert later and later != first
    assert dataset_commit(workspace, "abc123") == first  # the commit that recorded it, not a later one
    assert dataset_commit(workspace, "fff000") is None
