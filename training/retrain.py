"""``flywheel retrain [--force]``: reviewed labels -> a new dataset version -> a gated model.

When at least ``retrain.min_new_items`` reviewed items arrived since the last dataset version (items
with a task reviewed for the first time or reviewed again; :func:`pipelines.reviewed_dataset.new_items`),
or with ``force``:

1. **records a new dataset version**: ``dvc repro reviewed-dataset`` snapshots ``data/reviewed``
   (and its audio, out of the serving audio store) into ``data/reviewed-set``; ``dvc push`` sends it
   to the DVC remote (``.dvc-storage/`` by default); ``dvc.lock`` is committed to git. The version is
   ``data/reviewed-set@<md5>`` (:func:`registry.mlflow_utils.dataset_version`) plus that commit;
2. **runs the retrain stages**: ``dvc repro retrain-gate``, i.e. the reviewed pool shard (teacher
   targets), distillation fine-tuning, ONNX export, evaluation on the frozen gate set, registration in
   MLflow (tags ``dataset_version``, ``dataset_commit``) and the gate, which alone moves ``champion``;
   serving picks a new champion up by hot swap. Then ``dvc push`` and a second ``dvc.lock`` commit.

Without enough new items nothing runs and nothing is written, unless an earlier run stopped half-way
(MLflow down, a crash): stages of a recorded version that are not up to date are then finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flywheel.config import REPO_ROOT, load_params
from labeling.pull import MANIFEST
from pipelines.reviewed_dataset import new_items
from training.retrain_stages import RetrainConfig
from training.versioning import (
    CommandError,
    commit_lock,
    dataset_commit,
    dvc,
    is_git_repo,
    lock_stages,
    out_hash,
    pipeline_status,
)

DATASET_STAGE = "reviewed-dataset"
FINAL_STAGE = "retrain-gate"
STAGES = (
    DATASET_STAGE,
    "reviewed-pool",
    "retrain-distill",
    "retrain-export",
    "retrain-evaluate",
    FINAL_STAGE,
)
REVIEWED_DIR = "data/reviewed"
DATASET_DIR = "data/reviewed-set"
DECISION_FILE = "reports/retrain/gate.json"


class RetrainError(RuntimeError):
    """A step of the retrain failed; what was done before it is kept (the next run resumes)."""


@dataclass
class RetrainReport:
    """What one ``flywheel retrain`` did."""

    action: Literal["nothing", "retrained"]
    message: str
    new_items: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # unfinished stages of a recorded version (resumed)
    dataset_version: str | None = None
    dataset_commit: str | None = None
    decision: dict[str, Any] | None = None  # reports/retrain/gate.json
    commits: list[str] = field(default_factory=list)


def current_version(root: Path) -> str | None:
    """The dataset version ``dvc.lock`` records now (``data/reviewed-set@<md5[:12]>``), if any."""
    from registry.mlflow_utils import dataset_version

    if DATASET_STAGE not in lock_stages(root):
        return None
    return dataset_version([root / DATASET_DIR], repo=root)


def unfinished_stages(status: dict[str, list[Any]], lock: dict[str, Any]) -> list[str]:
    """Retrain stages of a recorded dataset version that did not finish (an earlier run stopped):
    never recorded in ``dvc.lock``, or their outputs missing or changed. A stage out of date only
    because its code or params changed is not unfinished (``--force`` rebuilds it)."""
    unfinished = []
    for stage, changes in status.items():
        if stage == DATASET_STAGE or stage not in STAGES:
            continue
        if stage not in lock or any(isinstance(c, dict) and "changed outs" in c for c in changes):
            unfinished.append(stage)
    return sorted(unfinished, key=STAGES.index)


def _restore_dataset(root: Path, echo: Callable[[str], None]) -> None:
    """The recorded snapshot back into the workspace (from the DVC cache, else the remote), so new
    items are counted against it; a failure leaves every item counted as new (said so)."""
    for args in (("checkout", DATASET_STAGE), ("pull", DATASET_STAGE)):
        code, _ = dvc(root, *args, check=False)
        if code == 0 and (root / DATASET_DIR / MANIFEST).is_file():
            return
    echo(
        f"warning: the recorded {DATASET_DIR} is neither in the DVC cache nor on the remote: "
        "every item counts as new"
    )


def _push(root: Path, target: str, echo: Callable[[str], None]) -> None:
    code, out = dvc(root, "push", "--with-deps", target, check=False)
    if code != 0:  # the data stays in the local DVC cache; `dvc push` later sends it
        echo(f"warning: `dvc push {target}` failed, the outputs are only in the local DVC cache:")
        echo(out[-2000:])


def retrain(
    root: Path = REPO_ROOT,
    *,
    force: bool = False,
    commit: bool = True,
    push: bool = True,
    tracking_uri: str | None = None,
    echo: Callable[[str], None] = print,
) -> RetrainReport:
    """Record a new dataset version and run the retrain stages when enough reviews arrived (see the
    module docstring); ``commit``: commit ``dvc.lock`` to git; ``push``: ``dvc push`` the outputs;
    ``tracking_uri``: the MLflow server the gate stage registers with (default: the environment's).

    Raises:
        RetrainError: a ``dvc`` stage or ``git`` failed (the message holds the end of its output).
        KeyError: ``params.yaml: retrain`` names a recipe that does not exist.
    """
    root = Path(root)
    cfg = RetrainConfig.from_params(load_params(root / "params.yaml"))
    reviewed, dataset = root / REVIEWED_DIR, root / DATASET_DIR
    if not (reviewed / MANIFEST).is_file():
        return RetrainReport(
            "nothing", f"no reviewed data in {reviewed}: pull reviews first (`flywheel label pull`)"
        )
    recorded = DATASET_STAGE in lock_stages(root)
    if recorded and not (dataset / MANIFEST).is_file():
        _restore_dataset(root, echo)
    new = new_items(reviewed, dataset)
    version = current_version(root)
    status = pipeline_status(root, FINAL_STAGE) if recorded else {}
    stale = unfinished_stages(status, lock_stages(root))
    report = RetrainReport("nothing", "", new_items=new, stale=stale, dataset_version=version)
    if not force and len(new) < cfg.min_new_items and not stale:
        outdated = sorted(set(status) - {DATASET_STAGE})
        report.message = (
            f"{len(new)} new reviewed item(s) since dataset version {version or '(none yet)'}, "
            f"retrain.min_new_items is {cfg.min_new_items}: nothing to do"
            + (f" (code or params of {', '.join(outdated)} changed: --force rebuilds)" if outdated else "")
        )
        return report
    if commit and not is_git_repo(root):
        raise RetrainError(f"{root} is not a git checkout: a dataset version needs a commit (or --no-commit)")
    env = {"FLYWHEEL_MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else None
    why = "forced" if force and len(new) < cfg.min_new_items else f"{len(new)} new reviewed item(s)"
    echo(f"retrain: {why}" + (f"; finishing stages {', '.join(stale)}" if stale else ""))
    try:
        dvc(root, "repro", DATASET_STAGE, echo=echo)
        if push:
            _push(root, DATASET_STAGE, echo)
        report.dataset_version = current_version(root)
        info = json.loads((dataset / "dataset.json").read_text())
        md5 = out_hash(root, DATASET_DIR) or ""
        if commit and dataset_commit(root, md5) is None:  # a version already committed is not again
            sha = commit_lock(
                root,
                f"Dataset version {report.dataset_version}: {info['items']} reviewed items "
                f"({len(new)} new or reviewed again), {info['reviewed_s']:.0f} s reviewed",
            )
            report.commits += [sha] if sha else []
        report.dataset_commit = dataset_commit(root, md5)
        where = f"commit {report.dataset_commit}" if report.dataset_commit else "not committed"
        echo(f"dataset version {report.dataset_version} ({where}): {info['items']} items")
        dvc(root, "repro", FINAL_STAGE, echo=echo, env=env)
        if push:
            _push(root, FINAL_STAGE, echo)
        report.decision = json.loads((root / DECISION_FILE).read_text())
        if commit:
            d = report.decision
            sha = commit_lock(
                root,
                f"Retrained {d['model_name']} v{d['version']} on dataset {d['dataset_version']}: "
                f"gate {d['action']}",
            )
            report.commits += [sha] if sha else []
    except CommandError as err:
        raise RetrainError(str(err)) from None
    report.action = "retrained"
    report.message = report.decision["summary"] if report.decision else "retrained"
    return report
