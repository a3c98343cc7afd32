"""Registry of diarization systems: every system turns a 16 kHz waveform into an Annotation.

Importing this module is cheap: a system's module (and torch, onnxruntime, ...) is imported only
when :func:`get_system` builds it.

    >>> from flywheel.systems import get_system
    >>> system = get_system("baseline", threshold=0.3)
    >>> annotation = system.diarize(waveform, uri="meeting")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from pyannote.core import Annotation


@runtime_checkable
class DiarizationSystem(Protocol):
    """What every system offers: a name and ``diarize``."""

    name: str

    def diarize(
        self, waveform: np.ndarray, uri: str = "audio", num_speakers: int | None = None
    ) -> Annotation:
        """Who spoke when in ``waveform`` (16 kHz mono float32); labels ``SPEAKER_00, ...``.
        ``num_speakers``: the number of speakers when the caller knows it (default: estimated)."""
        ...


@runtime_checkable
class ReclusterableSystem(DiarizationSystem, Protocol):
    """Optional split of ``diarize`` used by threshold tuning: the expensive part runs once per file.

    ``diarize(w, uri) == cluster(prepare(w), threshold=<the system's threshold>, uri=uri)``.
    """

    def prepare(self, waveform: np.ndarray) -> Any:
        """Everything up to the embeddings (speech regions, windows, embeddings)."""
        ...

    def cluster(
        self,
        prepared: Any,
        threshold: float | None = None,
        uri: str = "audio",
        num_speakers: int | None = None,
    ) -> Annotation:
        """Cluster prepared embeddings with ``threshold`` (default: the system's own), or into
        ``num_speakers`` speakers when given."""
        ...


# name -> "module:attribute" of a class (or factory) accepting keyword options.
_REGISTRY: dict[str, str] = {
    "baseline": "flywheel.systems.baseline:BaselineSystem",
    "fast-cnn": "flywheel.systems.onnx_system:FastCNNSystem",
    "distilhubert": "flywheel.systems.onnx_system:DistilHubertSystem",
    "teacher": "flywheel.systems.teacher:TeacherSystem",
    "senko": "flywheel.systems.external:SenkoSystem",
    "pyannote": "flywheel.systems.external:PyannoteSystem",
}


def register_system(name: str, target: str) -> None:
    """Register (or replace) a system: ``target`` is ``"package.module:ClassName"``, imported lazily."""
    if ":" not in target:
        raise ValueError(f"target must look like 'package.module:ClassName', got {target!r}")
    _REGISTRY[name] = target


def available_systems() -> list[str]:
    """Names accepted by :func:`get_system`, sorted."""
    return sorted(_REGISTRY)


def get_system(name: str, **options: Any) -> DiarizationSystem:
    """Build system ``name`` with keyword ``options`` (defaults come from ``params.yaml``).

    Raises:
        KeyError: unknown name (the message lists the available ones).
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown diarization system {name!r}; choose one of {available_systems()}")
    module_name, attr = _REGISTRY[name].split(":", 1)
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(**options)


__all__ = [
    "DiarizationSystem",
    "ReclusterableSystem",
    "available_systems",
    "get_system",
    "register_system",
]
