"""The gate's own record on an MLflow model version, and the evaluation it is based on.

A version is servable only if the gate wrote a record on it and the record matches the file being
loaded. The record (:class:`GateRecord`) holds the decision, the gate's numbers (DER on the gate
set, the champion it was compared with and that champion's DER there, the paired-bootstrap
interval), the gate set's version (a content hash of the set folder), the pipeline settings the
model was evaluated with, and the SHA-256 of the ONNX file the gate evaluated. It is stored as the
version tags ``gate_record`` (canonical JSON) and ``gate_signature``: an HMAC-SHA256 of the record
under the gate key, so a record typed by hand in the MLflow UI or API (or one copied from another
version: the record names its model, version and file digest) does not verify.

The gate key is ``FLYWHEEL_GATE_KEY`` (deployment secret; set it on every gate and serving host
of a cluster) or, on one machine, a random key generated once under ``<runtime>/gate/gate.key``
(mode 0600; ``FLYWHEEL_RUNTIME_DIR``, default ``runtime/``), next to the MLflow store. Readable
copies of the numbers are tagged too (``gate_decision``, ``der_gate``, ``gate_set_version``, ...),
for people; nothing reads them to decide what is served.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.config import REPO_ROOT, get_settings
from registry.gate_rules import GateRules
from registry.mlflow_utils import file_sha256

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from flywheel.metrics import DERBreakdown

RECORD_TAG = "gate_record"
SIGNATURE_TAG = "gate_signature"
KEY_ENV = "FLYWHEEL_GATE_KEY"
RECORD_FORMAT = 1
SERVABLE = frozenset({"champion", "challenger"})


class UngatedVersion(RuntimeError):
    """A version (or file) without a valid gate record: it must not be served."""


# ---------------------------------------------------------------- gate set


def normalize_set(path: str | Path) -> str:
    """A gate-set path as stored in tags: relative to the repository when inside it."""
    p = Path(path)
    p = (REPO_ROOT / p if not p.is_absolute() else p).resolve()
    try:
        return p.relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


_SET_HASHES: dict[tuple[Any, ...], str] = {}


def gate_set_version(path: str | Path) -> str:
    """Content hash of the gate set folder: ``sha256:<16 hex>`` over every file's relative name and
    SHA-256 (cached in-process by names, sizes and mtimes).

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(missing_set_message(root))
    files = sorted(p for p in root.rglob("*") if p.is_file())
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _SET_HASHES:
        digest = hashlib.sha256()
        for p in files:
            digest.update(f"{p.relative_to(root).as_posix()}\0{file_sha256(p)}\n".encode())
        _SET_HASHES[key] = f"sha256:{digest.hexdigest()[:16]}"
    return _SET_HASHES[key]


def missing_set_message(path: Path) -> str:
    """What to do when the gate set is not on this machine."""
    return (
        f"gate set {path} is missing on this machine: build it with `flywheel data real` "
        "(DVC stage `real`: `dvc repro real`, or `dvc pull`); nothing can be gated without it"
    )


# ---------------------------------------------------------------- evaluation


@dataclass
class GateEvaluation:
    """Per-file scores of one ONNX file on the gate set (collar 0, overlap scored)."""

    onnx_sha256: str
    gate_set_version: str
    uris: list[str]
    rows: list[DERBreakdown]
    pipeline: dict[str, Any] = field(default_factory=dict)

    @property
    def der(self) -> float:
        """Corpus DER over the files."""
        from flywheel.metrics import aggregate

        return aggregate(self.rows).der if self.rows else math.nan

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (the cache file and the version's ``gate/`` artifact)."""
        return {
            "onnx_sha256": self.onnx_sha256,
            "gate_set_version": self.gate_set_version,
            "der": self.der,
            "pipeline": self.pipeline,
            "files": [{"uri": u, **asdict(r)} for u, r in zip(self.uris, self.rows, strict=True)],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GateEvaluation:
        """Inverse of :meth:`to_json`."""
        from flywheel.metrics import DERBreakdown

        files = d["files"]
        rows = [DERBreakdown(**{k: v for k, v in f.items() if k != "uri"}) for f in files]
        return cls(d["onnx_sha256"], d["gate_set_version"], [f["uri"] for f in files], rows, d["pipeline"])


Evaluator = Callable[[str, Path, Path], GateEvaluation]


def evaluate_on_gate_set(
    model_name: str, onnx_path: Path, gate_set: Path, use_cache: bool = True
) -> GateEvaluation:
    """Diarize every file of ``gate_set`` with ``onnx_path`` under the settings the model carries
    (params.yaml for files that carry none) and score each file.

    Cached under ``<reports>/gate/cache/`` by file digest, gate-set version and pipeline settings.

    Raises:
        FileNotFoundError: the gate set is missing.
    """
    from flywheel.audio import load_audio
    from flywheel.metrics import der_breakdown
    from flywheel.systems import available_systems, get_system
    from flywheel.systems.onnx_system import OnnxSystem
    from flywheel.testset import iter_test_set

    set_version = gate_set_version(gate_set)
    sha = file_sha256(onnx_path)
    if model_name in available_systems():
        system = get_system(model_name, model_path=onnx_path)
    else:
        system = OnnxSystem(model_name, model_path=onnx_path)
    pipeline = dict(getattr(system, "pipeline_settings", {}) or {})
    pipe_hash = hashlib.sha256(json.dumps(pipeline, sort_keys=True).encode()).hexdigest()[:12]
    cache = get_settings().reports_dir / "gate" / "cache" / f"{sha[:16]}-{set_version[7:]}-{pipe_hash}.json"
    if use_cache and cache.is_file():
        return GateEvaluation.from_json(json.loads(cache.read_text()))
    uris, rows = [], []
    for item in iter_test_set(gate_set):
        hypothesis = system.diarize(load_audio(item.audio_path), uri=item.uri)
        uris.append(item.uri)
        rows.append(der_breakdown(item.reference, hypothesis, item.uem, collar=0.0))
    result = GateEvaluation(sha, set_version, uris, rows, pipeline)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_json()))
    os.replace(tmp, cache)
    return result


# ---------------------------------------------------------------- the record


def gate_key() -> bytes:
    """The HMAC key of gate records: ``FLYWHEEL_GATE_KEY``, else ``<runtime>/gate/gate.key``
    (created once, mode 0600)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    runtime = Path(os.environ.get("FLYWHEEL_RUNTIME_DIR") or REPO_ROOT / "runtime")
    path = runtime / "gate" / "gate.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".gate.key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's key
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode()


def _num(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, 6)


@dataclass
class GateRecord:
    """What the gate decided for one model version and on what evidence."""

    model_name: str
    version: str
    decision: str  # champion | challenger | rejected
    reason: str
    der: float | None
    gate_set: str
    gate_set_version: str | None
    onnx_sha256: str | None
    pipeline: dict[str, Any]
    rules: dict[str, Any]
    gated_at: str
    champion_version: str | None = None
    champion_der: float | None = None
    delta: float | None = None
    interval: list[float] | None = None
    files: int = 0
    format: int = RECORD_FORMAT

    def payload(self) -> str:
        """Canonical JSON (what is signed and stored)."""
        d = asdict(self)
        for key in ("der", "champion_der", "delta"):
            d[key] = _num(d[key])
        if d["interval"] is not None:
            d["interval"] = [_num(x) for x in d["interval"]]
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    def signature(self, key: bytes | None = None) -> str:
        """HMAC-SHA256 of :meth:`payload` under the gate key."""
        return hmac.new(key or gate_key(), self.payload().encode(), hashlib.sha256).hexdigest()

    def tags(self, key: bytes | None = None) -> dict[str, str]:
        """The version tags that store this record (and readable copies of its numbers)."""
        fmt = "nan" if self.der is None else f"{self.der:.6g}"
        return {
            RECORD_TAG: self.payload(),
            SIGNATURE_TAG: self.signature(key),
            "gate_decision": self.decision,
            "gate_reason": self.reason[:4000],
            "gated_at": self.gated_at,
            "der_gate": fmt,
            "gate_set": self.gate_set,
            "gate_set_version": str(self.gate_set_version),
            "gate_onnx_sha256": str(self.onnx_sha256),
        }

    @classmethod
    def from_payload(cls, text: str) -> GateRecord:
        """Parse a stored record (raises ``ValueError``/``TypeError``/``KeyError`` when malformed)."""
        d = json.loads(text)
        return cls(**d)


def read_record(version: ModelVersion, key: bytes | None = None) -> GateRecord:
    """The verified gate record of ``version``.

    Raises:
        UngatedVersion: no record, a record that does not verify under the gate key, or one
            written for another model or version.
    """
    text, signature = version.tags.get(RECORD_TAG), version.tags.get(SIGNATURE_TAG)
    where = f"{version.name} v{version.version}"
    if not text or not signature:
        hand = " (its der_gate tag was not written by the gate)" if "der_gate" in version.tags else ""
        raise UngatedVersion(f"{where} has no gate record{hand}: it was never gated")
    try:
        record = GateRecord.from_payload(text)
    except (ValueError, TypeError, KeyError) as err:
        raise UngatedVersion(f"{where}: malformed gate record ({err})") from None
    if not hmac.compare_digest(record.signature(key), signature):
        raise UngatedVersion(
            f"{where}: gate record signature does not verify (record edited or typed by hand)"
        )
    if (record.model_name, record.version) != (version.name, str(version.version)):
        raise UngatedVersion(
            f"{where}: gate record was written for {record.model_name} v{record.version} (copied by hand)"
        )
    return record


def servable_record(
    version: ModelVersion,
    path: Path | None = None,
    *,
    allowed: frozenset[str] = SERVABLE,
    key: bytes | None = None,
) -> GateRecord:
    """The gate record of a version serving may load, checked against the file when ``path`` is given.

    Raises:
        UngatedVersion: no valid record, a decision outside ``allowed``, or a file whose SHA-256 is
            not the one the gate evaluated.
    """
    record = read_record(version, key)
    where = f"{version.name} v{version.version}"
    if record.decision not in allowed:
        raise UngatedVersion(f"{where}: the gate decided {record.decision!r} ({record.reason})")
    if not record.onnx_sha256:
        raise UngatedVersion(f"{where}: gate record has no ONNX digest")
    if path is not None:
        actual = file_sha256(path)
        if actual != record.onnx_sha256:
            raise UngatedVersion(
                f"{where}: ONNX file {path.name} has SHA-256 {actual[:16]}..., the gate evaluated "
                f"{record.onnx_sha256[:16]}... (file replaced or tampered with)"
            )
    return record


def rules_dict(rules: GateRules) -> dict[str, Any]:
    """The rule values a record was decided under."""
    return {
        "max_der": rules.max_der,
        "beta_max_der": rules.beta_max_der,
        "tolerance": rules.tolerance,
        "require_better": rules.require_better,
        "confidence": rules.confidence,
        "bootstrap_samples": rules.bootstrap_samples,
    }
