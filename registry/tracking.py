"""MLflow run logging: one run per job (``flywheel train``, ``flywheel evaluate``, the A/B report ...).

:func:`start_run` opens a run tagged with its kind and the git commit; the :class:`Tracker` it
returns logs parameters, metrics, tags and artifacts. What a job logs is next to the job:
:mod:`training.train_tracking` (recipe, dataset version, dev DER per epoch, the best checkpoint as
ONNX, a dev timeline) and :mod:`experiments.eval_tracking` (DER per evaluation set at collars 0 and
0.25, latency from the benchmark report, report, hypothesis RTTMs, plots); this module imports
neither (``tests/test_layering.py``).

MLflow being down never stops training or evaluation: :func:`start_run` probes ``/health`` with a
short timeout and returns a no-op :class:`Tracker` after printing
``MLflow unreachable at <uri>: nothing logged``; a failure in the middle of a run disables logging
for the rest of it with a warning.
"""

from __future__ import annotations

import atexit
import json
import math
import sys
from pathlib import Path
from typing import Any

from flywheel.config import REPO_ROOT, get_settings
from registry.mlflow_utils import (
    configure_client,
    flatten,
    get_or_create_experiment,
    git_commit,
    is_reachable,
    tracking_uri,
    unreachable_message,
)

BENCHMARK_REPORT = REPO_ROOT / "reports" / "benchmarks" / "diarization.json"


def warn(message: str) -> None:
    """Print a tracking problem on stderr (the job goes on)."""
    print(message, file=sys.stderr, flush=True)


class Tracker:
    """No-op tracker: what a run gets when tracking is off or MLflow is unreachable."""

    active = False
    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        """Log (flattened) parameters."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics (non-finite values are skipped)."""

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set run tags."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a whole directory."""

    def end(self, status: str = "FINISHED") -> None:
        """Close the run (``FINISHED``, ``FAILED`` or ``KILLED``)."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.end("FINISHED" if exc_type is None else "FAILED")


class MlflowTracker(Tracker):
    """One MLflow run; any client error disables further logging (the job itself goes on)."""

    def __init__(self, client: Any, run_id: str, uri: str):
        self.client, self.run_id, self.uri = client, run_id, uri
        self.active = True
        self._ended = False
        atexit.register(self._end_at_exit)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        if not self.active:
            return
        try:
            fn(*args, **kwargs)
        except Exception as err:  # MLflow down mid-run, quota, bad value: never fail the job
            self.active = False
            warn(f"MLflow logging failed ({what}) at {self.uri}: {err}; nothing more logged for this run")

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):  # the REST API takes at most 100 params per batch
            self._call("params", self.client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in metrics.items()
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        if items:
            self._call("metrics", self.client.log_batch, self.run_id, metrics=items)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items() if v is not None]
        self._call("tags", self.client.log_batch, self.run_id, tags=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self._call(f"artifacts {path}", self.client.log_artifacts, self.run_id, str(path), artifact_path)
        elif path.is_file():
            self._call(f"artifact {path}", self.client.log_artifact, self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self._ended:
            return
        self._ended = True
        atexit.unregister(self._end_at_exit)
        was_active = self.active
        self._call("end", self.client.set_terminated, self.run_id, status)
        if was_active and self.active:
            print(f"MLflow run {self.run_id} logged at {self.uri}", file=sys.stderr, flush=True)

    def _end_at_exit(self) -> None:
        """A crashed or interrupted job leaves a FAILED run, not a RUNNING one."""
        self.end("FAILED")


def start_run(
    kind: str,
    run_name: str,
    *,
    tags: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    enabled: bool = True,
    uri: str | None = None,
    experiment: str | None = None,
) -> Tracker:
    """Open an MLflow run (``kind``: train, evaluate, register ...) or return a no-op tracker.

    Prints ``MLflow unreachable at <uri>: nothing logged`` when the server does not answer ``/health``
    within ``mlflow_timeout_s`` (2 s by default).
    """
    if not enabled:
        return Tracker()
    uri = tracking_uri(uri)
    configure_client()
    if not is_reachable(uri):
        warn(unreachable_message(uri))
        return Tracker()
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        experiment_id = get_or_create_experiment(client, experiment or get_settings().mlflow_experiment, uri)
        all_tags = {"kind": kind, "git_commit": git_commit(), **(tags or {})}
        run = client.create_run(
            experiment_id,
            run_name=run_name,
            tags={k: str(v) for k, v in all_tags.items() if v is not None},
        )
    except Exception as err:
        warn(f"{unreachable_message(uri)} ({err})")
        return Tracker()
    tracker = MlflowTracker(client, run.info.run_id, uri)
    if params:
        tracker.log_params(params)
    return tracker


def benchmark_latency(system_name: str, path: Path = BENCHMARK_REPORT) -> dict[str, Any] | None:
    """``{"p50_ms", "p99_ms", "model"}`` of a system's forward pass from the benchmark report, if any."""
    try:
        forward = json.loads(path.read_text())["systems"][system_name]["forward"]
        return {"p50_ms": float(forward["p50_ms"]), "p99_ms": float(forward["p99_ms"]), **forward}
    except (OSError, KeyError, TypeError, ValueError):
        return None
