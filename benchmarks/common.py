"""Helpers shared by the benchmark scripts: thread pinning, machine description, percentiles."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import typer


def pin_threads(cpu: int | None = 0) -> None:
    """One thread everywhere (BLAS, OpenMP, torch) and, if possible, one CPU core for this process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import onnxruntime

    model = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "pinned_to": affinity,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def time_calls(fn: Callable[[], Any], runs: int, warmup: int) -> dict[str, float]:
    """Latency percentiles in milliseconds over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    ms = samples * 1000
    return {
        "runs": runs,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (``VmHWM``), or ``nan`` where ``/proc`` is missing.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries that across ``fork`` + ``exec``, so a fresh
    subprocess of a large benchmark process would report its parent's size.
    """
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return float("nan")


def parse_overrides(spec: str) -> dict[str, str]:
    """``"step_s=2.5, stitching=hard"`` -> ``{"step_s": "2.5", "stitching": "hard"}`` (typed later, by
    :func:`override_params`). Raises ``typer.BadParameter`` on a part without ``=value``."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        if not value.strip():
            raise typer.BadParameter(f"expected key=value, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def override_params(params: Any, overrides: Mapping[str, str]) -> Any:
    """A copy of the dataclass ``params`` (e.g. ``NeuralParams``) with ``overrides`` applied, each value
    cast to the type of the field's current value (a field that is ``None`` takes a number); the
    dataclass's own checks run again. Raises ``typer.BadParameter`` for an unknown field."""
    names = {f.name for f in dataclasses.fields(params)}
    typed: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            known = ", ".join(sorted(names))
            raise typer.BadParameter(f"unknown pipeline parameter {key!r} (known: {known})")
        current = getattr(params, key)
        if current is None:
            typed[key] = float(value) if "." in value or "e" in value.lower() else int(value)
        elif isinstance(current, bool):
            typed[key] = value.lower() in ("1", "true", "yes")
        else:
            typed[key] = type(current)(value)
    return dataclasses.replace(params, **typed)
