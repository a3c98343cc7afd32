"""The bodies of the retrain DVC stages (``dvc.yaml``; run by ``flywheel retrain`` through ``dvc repro``).

``reviewed-dataset`` -> ``reviewed-pool`` -> ``retrain-distill`` -> ``retrain-export`` ->
``retrain-evaluate`` -> ``retrain-gate``. Each stage reads the workspace's ``params.yaml`` (the one
``dvc repro`` tracks: :func:`use_params` makes every library call read it too) and takes its paths
relative to the workspace, so the same stages run in this checkout or in any other DVC workspace.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.config import get_settings, load_params

RETRAIN_DEFAULTS: dict[str, Any] = {
    "min_new_items": 20,
    "model_type": "fast-cnn",
    "recipe": "retrain",
    "model_name": "fast-cnn",
    "quantize": None,
    "pseudo_min_confidence": 0.7,
}


@dataclass(frozen=True)
class RetrainConfig:
    """``params.yaml: retrain``: when to retrain, what, and where the new version goes."""

    min_new_items: int = 20  # reviewed items (new or reviewed again) since the last dataset version
    model_type: str = "fast-cnn"  # the arm fine-tuned by distillation
    recipe: str = "retrain"  # distill.<model_type>.<recipe>
    model_name: str = "fast-cnn"  # registered MLflow model of the new version (then the gate)
    quantize: str | None = None  # export: None (float), int8 or int8-static (training/export.py)
    pseudo_min_confidence: float = 0.7  # pseudo-labels in data/pseudo-set (pipelines/pseudo_dataset.py)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RetrainConfig:
        """The ``retrain`` section, defaults where a key is missing; the recipe must exist.

        Raises:
            KeyError: ``distill.<model_type>.<recipe>`` is not in the params.
        """
        cfg = cls(**{**RETRAIN_DEFAULTS, **(params.get("retrain") or {})})
        recipes = params.get("distill", {}).get(cfg.model_type, {})
        if cfg.recipe not in recipes:
            raise KeyError(
                f"retrain.recipe {cfg.recipe!r} is not a recipe of distill.{cfg.model_type} "
                f"(have {sorted(recipes)})"
            )
        return cfg


def use_params(path: Path) -> dict[str, Any]:
    """Make ``path`` the params file of this process (``FLYWHEEL_PARAMS_FILE``) and return it, so the
    gate rules, the systems' settings and the recipes all come from the workspace DVC tracks."""
    os.environ["FLYWHEEL_PARAMS_FILE"] = str(path.resolve())
    get_settings.cache_clear()
    return load_params(path)


def distill_stage(params: dict[str, Any], data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Fine-tune ``retrain.model_type`` by distillation recipe ``retrain.recipe`` (its pool: the
    reviewed pool); returns the summary (``out_dir/summary.json``).

    Raises:
        FileNotFoundError: the recipe's ``init_from`` checkpoint is missing.
    """
    from training.distill import DistillConfig, distill

    cfg = RetrainConfig.from_params(params)
    recipe = DistillConfig.load(cfg.model_type, cfg.recipe, params)
    if recipe.init_from and not Path(recipe.init_from).is_file():
        raise FileNotFoundError(
            f"distill.{cfg.model_type}.{cfg.recipe}.init_from {recipe.init_from} is missing: train the "
            "model it continues first (`flywheel distill`), or set init_from: null"
        )
    return distill(cfg.model_type, cfg.recipe, out_dir, params=params, data_dir=data_dir, resume=False)


def export_stage(params: dict[str, Any], checkpoint: Path, out: Path, data_dir: Path) -> dict[str, Any]:
    """Export the fine-tuned checkpoint to ONNX carrying the pipeline settings it is to be served
    (and gated) with: ``systems.<model_type>`` with the cosine threshold its dev selection chose.

    Raises:
        FileNotFoundError: no checkpoint (dev DER was never finite).
        training.export.ParityError: ONNX and PyTorch disagree.
    """
    from flywheel.systems.onnx_system import pipeline_settings
    from training.export import export_onnx, load_checkpoint

    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint {checkpoint}: the distillation stage kept none")
    cfg = RetrainConfig.from_params(params)
    _, ckpt = load_checkpoint(checkpoint)
    pipeline = pipeline_settings(params.get("systems", {}).get(cfg.model_type, {}))
    if ckpt.get("threshold") is not None:
        pipeline["threshold"] = float(ckpt["threshold"])
    return export_onnx(
        checkpoint, out, optimization="extended", quantize=cfg.quantize, data_dir=data_dir, pipeline=pipeline
    )


def evaluate_stage(params: dict[str, Any], onnx: Path, out: Path) -> dict[str, Any]:
    """DER of the exported model on the frozen gate set (``promotion.gate_set``), as the gate will
    compute it (and caches it: the gate reuses it); writes and returns the metrics."""
    from registry.gate import evaluate_on_gate_set, normalize_set
    from registry.gate_rules import GateRules

    cfg = RetrainConfig.from_params(params)
    rules = GateRules.from_params(params)
    result = evaluate_on_gate_set(cfg.model_name, onnx, rules.gate_set)
    metrics = {
        "der_gate": result.der,
        "files": len(result.rows),
        "gate_set": normalize_set(rules.gate_set),
        "gate_set_version": result.gate_set_version,
        "onnx_sha256": result.onnx_sha256,
    }
    _write_json(out, metrics)
    return metrics


def gate_stage(
    params: dict[str, Any],
    root: Path,
    onnx: Path,
    evaluation: Path,
    dataset_dir: Path,
    out: Path,
    summary: Path | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Register the exported model in MLflow (tagged with the dataset version it was trained from;
    ``summary``: the distillation summary, whose dev DER is logged with it) and run the gate on it;
    writes and returns the decision.

    A file already registered (same SHA-256) is not registered again: the gate runs on that version.

    Raises:
        registry.models.RegistryUnavailable: MLflow does not answer (nothing registered).
    """
    from registry.gate_rules import GateRules
    from registry.mlflow_utils import dataset_version, file_sha256
    from registry.models import all_versions, client_for, register
    from registry.promote import promote
    from training.versioning import dataset_commit, out_hash

    cfg = RetrainConfig.from_params(params)
    rules = GateRules.from_params(params)
    client, uri = client_for(tracking_uri)
    metrics = json.loads(evaluation.read_text())
    trained = _read_json(summary) if summary is not None else {}
    sha = file_sha256(onnx)
    version_of = {v.tags.get("onnx_sha256"): str(v.version) for v in all_versions(client, cfg.model_name)}
    data = dataset_version([dataset_dir], repo=root)
    md5 = out_hash(root, _rel(dataset_dir, root))
    commit = (dataset_commit(root, md5) if md5 else None) or "uncommitted"
    info = _read_json(dataset_dir / "dataset.json")
    version = version_of.get(sha)
    registered = version is None
    if version is None:
        version = register(
            cfg.model_name,
            onnx,
            {
                "der_gate": float(metrics["der_gate"]),
                "best_dev_der": float(trained.get("best_dev_der", math.nan)),
            },
            dataset_version=data,
            gate_set=rules.gate_set,
            tracking_uri=uri,
            tags={
                "origin": "retrain",
                "dataset_commit": commit,
                "dataset_items": info.get("items", "unknown"),
                "retrain_recipe": f"distill.{cfg.model_type}.{cfg.recipe}",
            },
        )
    decision = promote(cfg.model_name, version, tracking_uri=uri, rules=rules)
    result = {
        "model_name": cfg.model_name,
        "version": version,
        "registered": registered,
        "action": decision.action,
        "reason": decision.reason,
        "summary": decision.summary(),
        "der_gate": None if math.isnan(decision.der) else decision.der,
        "champion_version": decision.champion_version,
        "dataset_version": data,
        "dataset_commit": commit,
        "onnx_sha256": sha,
    }
    _write_json(out, result)
    return result


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
