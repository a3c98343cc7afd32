"""MLflow model registry for the arms: registration, champion resolution, first-start bootstrap.

Registered models ``fast-cnn`` and ``distilhubert``; every version is one ONNX file with tags
``der_gate`` (claimed at registration; the gate overwrites it with its own number), ``gate_set``,
``latency_p50_ms``, ``latency_p99_ms``, ``dataset_version``, ``git_commit``, ``onnx_sha256`` and
``pipeline`` (the pipeline settings the model carries, JSON). The promotion gate
(:mod:`registry.promote`) writes its signed record (:mod:`registry.gate`) and is the only
thing that sets the aliases ``champion`` / ``challenger`` (never stages).

:func:`resolve_champion` is what serving calls: it never imports torch and trusts only the gate's
record: the version under ``champion`` is served only when its record verifies, says ``champion``
and names the SHA-256 of the file downloaded. Anything else (an alias moved by hand, a ``der_gate``
typed by hand, a replaced file) is refused with a LOUD error, and the last version the gate made
champion is served instead, else the release model kept in the repository
(``models/release/<name>.onnx``), which is also the answer when MLflow is unreachable.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flywheel.config import REPO_ROOT, get_settings, load_params
from registry.gate import UngatedVersion, normalize_set, servable_record
from registry.mlflow_utils import (
    configure_client,
    file_sha256,
    get_or_create_experiment,
    git_commit,
    is_reachable,
    unreachable_message,
)
from registry.mlflow_utils import dataset_version as data_version
from registry.mlflow_utils import tracking_uri as default_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

MODEL_NAMES = ("fast-cnn", "distilhubert")
CHAMPION = "champion"
CHALLENGER = "challenger"
REGISTRY_EXPERIMENT = "model-registry"
RELEASE_DIR = REPO_ROOT / "models" / "release"
DEFAULT_GATE_SET = "data/real/confirm-real"  # registry.gate_rules.DEFAULT_GATE_SET
ONNX_ARTIFACT_DIR = "onnx"


class RegistryUnavailable(RuntimeError):
    """The tracking server does not answer (the caller decides what to fall back to)."""


@dataclass
class ChampionRef:
    """The model serving should load."""

    name: str
    version: str  # registry version, or "release"
    path: Path  # local ONNX file
    der: float  # DER on the gate set (nan when unknown)
    source: Literal["mlflow", "release"]
    sha256: str | None = None  # the digest the gate evaluated (mlflow): what the loaded file must have
    pipeline: dict[str, Any] | None = None  # the pipeline settings the gate evaluated it with


# ---------------------------------------------------------------- helpers


def promotion_params(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``params.yaml: promotion`` with defaults (:func:`registry.gate_rules.promotion_params`)."""
    from registry.gate_rules import promotion_params as read

    return read(params)


def client_for(uri: str | None = None) -> tuple[MlflowClient, str]:
    """An MLflow client after a short ``/health`` probe.

    Raises:
        RegistryUnavailable: the server does not answer within ``mlflow_timeout_s``.
    """
    uri = default_uri(uri)
    configure_client()
    if not is_reachable(uri):
        raise RegistryUnavailable(unreachable_message(uri))
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def tag_float(version: ModelVersion | None, key: str = "der_gate") -> float:
    """A numeric tag of a model version (nan when absent or not a number)."""
    if version is None:
        return math.nan
    try:
        return float(version.tags.get(key, "nan"))
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create registered model ``name`` when missing."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description=f"{name} diarization model (ONNX); aliases: champion, challenger"
        )


def get_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points to, ``None`` when the alias or the model does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def all_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of ``name``, oldest first."""
    versions = client.search_model_versions(f"name='{name}'")
    return sorted(versions, key=lambda v: int(v.version))


def last_good_version(
    client: MlflowClient, name: str, exclude: set[str] | None = None
) -> ModelVersion | None:
    """Highest version whose gate record verifies and says ``champion`` (the last good version)."""
    for v in reversed(all_versions(client, name)):
        if str(v.version) in (exclude or set()):
            continue
        try:
            servable_record(v, allowed=frozenset({CHAMPION}))
        except UngatedVersion:
            continue
        return v
    return None


def model_pipeline(name: str, onnx_path: Path) -> dict[str, Any]:
    """The pipeline settings an ONNX file carries (its flywheel metadata), else ``params.yaml:
    systems.<name>`` (an old file: what it would be served with today)."""
    from flywheel.systems.onnx_system import pipeline_settings

    try:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        carried = json.loads(props.get("flywheel", "{}")).get("pipeline")
    except Exception:
        carried = None
    if carried:
        return dict(carried)
    return pipeline_settings(load_params().get("systems", {}).get(name, {}))


# ---------------------------------------------------------------- register


def register(
    model_name: str,
    onnx_path: str | Path,
    metrics: dict[str, float],
    dataset_version: str,
    commit: str | None = None,
    *,
    gate_set: str | Path | None = None,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    tags: dict[str, Any] | None = None,
) -> str:
    """Register ``onnx_path`` as a new version of ``model_name``; returns the version number.

    ``metrics``: ``der_gate`` (DER on ``gate_set``), ``latency_p50_ms``, ``latency_p99_ms`` (missing
    ones are tagged ``nan``); any other numbers are logged as run metrics. The file is uploaded as an
    artifact of ``run_id`` (a training run) or of a new run in the ``model-registry`` experiment.

    Raises:
        RegistryUnavailable: MLflow does not answer.
        FileNotFoundError: ``onnx_path`` does not exist.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    client, uri = client_for(tracking_uri)
    ensure_registered_model(client, model_name)
    gate = normalize_set(gate_set or promotion_params()["gate_set"])
    commit = commit or git_commit()
    if run_id is None:
        experiment_id = get_or_create_experiment(client, REGISTRY_EXPERIMENT, uri)
        run = client.create_run(
            experiment_id,
            run_name=f"register-{model_name}",
            tags={"kind": "register", "model_name": model_name, "git_commit": commit},
        )
        run_id = run.info.run_id
        for key, value in metrics.items():
            if isinstance(value, int | float) and math.isfinite(value):
                client.log_metric(run_id, key, float(value))
        client.log_artifact(run_id, str(onnx_path), ONNX_ARTIFACT_DIR)
        client.set_terminated(run_id)
    else:
        run = client.get_run(run_id)
        client.log_artifact(run_id, str(onnx_path), ONNX_ARTIFACT_DIR)
    version_tags = {
        "der_gate": _fmt(float(metrics.get("der_gate", math.nan))),
        "latency_p50_ms": _fmt(float(metrics.get("latency_p50_ms", math.nan))),
        "latency_p99_ms": _fmt(float(metrics.get("latency_p99_ms", math.nan))),
        "dataset_version": dataset_version,
        "git_commit": commit,
        "gate_set": gate,
        "onnx_sha256": file_sha256(onnx_path),
        "onnx_file": onnx_path.name,
        "pipeline": json.dumps(model_pipeline(model_name, onnx_path), sort_keys=True)[:5000],
        **{k: _fmt(v) for k, v in (tags or {}).items()},
    }
    mv = client.create_model_version(
        model_name,
        source=f"{run.info.artifact_uri}/{ONNX_ARTIFACT_DIR}",
        run_id=run_id,
        tags=version_tags,
        description=f"{onnx_path.name}: DER {version_tags['der_gate']} on {gate}",
    )
    log.info("registered %s v%s (DER %s on %s)", model_name, mv.version, version_tags["der_gate"], gate)
    return str(mv.version)


def download_version(
    client: MlflowClient,
    version: ModelVersion,
    uri: str,
    cache_dir: Path | None = None,
    expected_sha: str | None = None,
) -> Path:
    """The version's ONNX file in the local cache (downloaded once; checked against
    ``expected_sha``, by default the ``onnx_sha256`` tag; a cached file that differs is replaced).

    Raises:
        ValueError: the downloaded file does not have the expected SHA-256.
    """
    cache = (cache_dir or get_settings().model_cache_dir) / version.name / str(version.version)
    expected = expected_sha or version.tags.get("onnx_sha256")
    cached = sorted(cache.glob("*.onnx")) if cache.is_dir() else []
    if cached and (expected is None or file_sha256(cached[0]) == expected):
        return cached[0]
    import mlflow.artifacts

    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        source = client.get_model_version_download_uri(version.name, str(version.version))
        mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=uri)
        files = sorted(Path(tmp).rglob("*.onnx"))
        if not files:
            raise FileNotFoundError(f"model version {version.name}/{version.version} holds no .onnx file")
        if expected and file_sha256(files[0]) != expected:
            raise ValueError(
                f"{version.name}/{version.version}: downloaded ONNX has SHA-256 "
                f"{file_sha256(files[0])[:16]}..., expected {expected[:16]}..."
            )
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / files[0].name
        os.replace(files[0], target)  # atomic: concurrent replicas never read a partial file
    return target


# ---------------------------------------------------------------- resolve


def release_path(name: str, release_dir: Path | None = None) -> Path:
    """``models/release/<name>.onnx``."""
    return (release_dir or RELEASE_DIR) / f"{name}.onnx"


def release_metrics(name: str, release_dir: Path | None = None) -> dict[str, Any]:
    """Benchmark numbers kept next to a release model (``models/release/<name>.json``), if any.

    Accepted shapes: ``{"der_gate", "gate_set", "latency_p50_ms", "latency_p99_ms"}`` or one
    system entry of ``reports/benchmarks/diarization.json`` (``test.der_collar_0``, ``forward.p50_ms``).
    """
    path = (release_dir or RELEASE_DIR) / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, Any] = {}
    if "dataset_version" in data:
        out["dataset_version"] = str(data["dataset_version"])
    if "der_gate" in data:
        out["der_gate"] = float(data["der_gate"])
        out["gate_set"] = data.get("gate_set", DEFAULT_GATE_SET)
    elif "der_collar_0" in data.get("test", {}):
        out["der_gate"] = float(data["test"]["der_collar_0"])
        out["gate_set"] = data.get("test_set", DEFAULT_GATE_SET)
    forward = data.get("forward", {})
    for key, src in (("latency_p50_ms", "p50_ms"), ("latency_p99_ms", "p99_ms")):
        if key in data:
            out[key] = float(data[key])
        elif src in forward:
            out[key] = float(forward[src])
    return out


_release_reasons: dict[str, str] = {}  # model name -> why it last fell back to the release model


def _release_ref(name: str, release_dir: Path | None, reason: str) -> ChampionRef:
    path = release_path(name, release_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no model for {name}: {reason}, and the release model {path} does not exist")
    # once per outage, not once per poll: a replica polling every second during a 20 s MLflow
    # outage would otherwise write 20 identical warnings
    level = logging.DEBUG if _release_reasons.get(name) == reason else logging.WARNING
    _release_reasons[name] = reason
    log.log(level, "%s: serving the release model %s (%s)", name, path, reason)
    der = release_metrics(name, release_dir).get("der_gate", math.nan)
    return ChampionRef(name=name, version="release", path=path, der=float(der), source="release")


def _loud(message: str) -> None:
    bar = "!" * 78
    log.error("\n%s\n!!! %s\n%s", bar, message, bar)


def _gated_ref(client: MlflowClient, mv: ModelVersion, uri: str, cache_dir: Path | None) -> ChampionRef:
    """Download a version and check it against its gate record.

    Raises:
        UngatedVersion: no valid ``champion`` record, or the file is not the one the gate evaluated.
    """
    record = servable_record(mv, allowed=frozenset({CHAMPION}))
    try:
        path = download_version(client, mv, uri, cache_dir, expected_sha=record.onnx_sha256)
    except ValueError as err:  # the stored file is not the one the gate evaluated
        raise UngatedVersion(f"{mv.name} v{mv.version}: {err} (file replaced or tampered with)") from None
    servable_record(mv, path, allowed=frozenset({CHAMPION}))
    _release_reasons.pop(mv.name, None)  # MLflow answers again: the next fallback is news
    der = math.nan if record.der is None else float(record.der)
    return ChampionRef(
        name=mv.name,
        version=str(mv.version),
        path=path,
        der=der,
        source="mlflow",
        sha256=record.onnx_sha256,
        pipeline=dict(record.pipeline) or None,
    )


def resolve_champion(
    model_name: str,
    tracking_uri: str | None = None,
    *,
    cache_dir: Path | None = None,
    release_dir: Path | None = None,
) -> ChampionRef:
    """The ONNX model serving should load for ``model_name``.

    1. the version under the ``champion`` alias, if the gate's record on it verifies, says
       ``champion`` and names the SHA-256 of the downloaded file;
    2. otherwise (alias set by hand, der_gate typed by hand, file replaced) a LOUD error and the
       newest other version that passes the same check (the last good version);
    3. otherwise, or when MLflow is unreachable or the lookup fails, the release model
       ``models/release/<name>.onnx`` (``source="release"``).

    Raises:
        FileNotFoundError: nothing usable in MLflow and no release model either.
    """
    try:
        client, uri = client_for(tracking_uri)
    except RegistryUnavailable as err:
        return _release_ref(model_name, release_dir, str(err))
    try:
        champion = get_alias(client, model_name, CHAMPION)
        refused: set[str] = set()
        if champion is not None:
            try:
                return _gated_ref(client, champion, uri, cache_dir)
            except UngatedVersion as err:
                refused.add(str(champion.version))
                problem = str(err)
        for mv in reversed(all_versions(client, model_name)):
            if str(mv.version) in refused:
                continue
            try:
                ref = _gated_ref(client, mv, uri, cache_dir)
            except UngatedVersion:
                continue
            if champion is not None:
                _loud(
                    f"REFUSED {model_name}@{CHAMPION} -> version {champion.version}: {problem}; "
                    f"NOT serving it (only the promotion gate may set {CHAMPION}); serving the last "
                    f"good version {mv.version} instead (`flywheel promote -m {model_name} -v "
                    f"{champion.version}` runs the gate on it and moves the alias back)"
                )
            else:
                log.warning("%s has no champion alias: using last gated v%s", model_name, mv.version)
            return ref
        if champion is not None:
            _loud(
                f"REFUSED {model_name}@{CHAMPION} -> version {champion.version}: {problem}; NOT serving "
                f"it (only the promotion gate may set {CHAMPION}); no gated version left: serving the "
                "release model"
            )
        return _release_ref(model_name, release_dir, f"no gated {CHAMPION} in MLflow at {uri}")
    except Exception as err:  # registry errors must not take serving down
        log.error("%s: champion lookup in MLflow failed: %s", model_name, err)
        return _release_ref(model_name, release_dir, f"MLflow lookup failed: {err}")


# ---------------------------------------------------------------- bootstrap


def _onnx_metadata_metrics(path: Path) -> dict[str, Any]:
    """``der_gate``/``gate_set`` from the flywheel metadata of an ONNX file, when it carries them."""
    try:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        extra = json.loads(props.get("flywheel", "{}")).get("extra", {})
    except Exception:
        return {}
    if extra.get("der_gate") is None:
        return {}
    return {"der_gate": float(extra["der_gate"]), "gate_set": extra.get("gate_set", DEFAULT_GATE_SET)}


def bootstrap_registry(
    tracking_uri: str | None = None,
    *,
    names: tuple[str, ...] = MODEL_NAMES,
    release_dir: Path | None = None,
    gate_set: str | Path | None = None,
    evaluator: Any = None,
) -> dict[str, str | None]:
    """Register the release models kept in the repository (idempotent); returns ``{name: version}``.

    A release file already registered (same ``onnx_sha256``) is not registered again. Its DER comes
    from ``models/release/<name>.json`` or the ONNX metadata; without either it is evaluated on the
    gate set. Each new version then goes through the promotion gate (which evaluates it itself on
    the gate set; ``evaluator`` replaces that evaluation in tests), so the registry is never empty
    and the first release becomes ``champion`` when it passes.
    """
    from dataclasses import replace

    from registry.gate_rules import GateRules
    from registry.promote import promote

    rules = GateRules.from_params()
    if gate_set is not None:
        rules = replace(rules, gate_set=Path(gate_set))
    client, uri = client_for(tracking_uri)
    result: dict[str, str | None] = {}
    for name in names:
        path = release_path(name, release_dir)
        if not path.is_file():
            result[name] = None
            continue
        sha = file_sha256(path)
        existing = [v for v in all_versions(client, name) if v.tags.get("onnx_sha256") == sha]
        if existing:
            result[name] = str(existing[0].version)
            continue
        metrics = release_metrics(name, release_dir) or _onnx_metadata_metrics(path)
        gate = metrics.pop("gate_set", None) or normalize_set(rules.gate_set)
        data = metrics.pop("dataset_version", None) or data_version([REPO_ROOT / gate])
        version = register(
            name,
            path,
            metrics,
            dataset_version=data,
            gate_set=gate,
            tracking_uri=uri,
            tags={"origin": "release"},
        )
        result[name] = version
        decision = promote(name, version, tracking_uri=uri, rules=rules, evaluator=evaluator)
        log.info("bootstrap %s version %s: %s", name, version, decision.summary())
    return result
