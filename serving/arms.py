"""An A/B arm: one diarization model (onnxruntime) that follows its champion and hot-swaps.

The loaded model and its description are one immutable :class:`LoadedModel`; a request takes a
reference to it once, so a swap (a single attribute assignment) never disturbs requests in flight:
they finish on the model they started with, and the old one is freed when the last of them ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.segments import turns_of
from serving.champion import Champion, release_champion, resolve

log = logging.getLogger(__name__)

Resolver = Callable[[], Champion | None]


class RefusedModel(RuntimeError):
    """A gated champion whose file is not the one the gate evaluated."""


def _loud(message: str) -> None:
    bar = "!" * 78
    log.error("\n%s\n!!! %s\n%s", bar, message, bar)


@dataclass(frozen=True)
class ArmSpec:
    """How to build an arm (from the Serve config ``args.arms``)."""

    name: str
    model_name: str | None = None
    model_path: str | None = None
    threads: int = 1
    poll_s: float = 30.0
    tracking_uri: str | None = None
    nice: int = 0  # added to the arm replica's CPU niceness (heavy arms yield the cores to light ones)
    retry_after_s: float = 1.0  # Retry-After of a request shed because this arm is full
    max_pending: int | None = None  # embedded arm: requests it holds in the ingress; past it: shed
    overrides: dict[str, Any] = field(default_factory=dict)  # NeuralParams (step_s, threshold, ...)

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any] | None) -> ArmSpec:
        """Build from a config mapping; unknown keys go to the pipeline overrides."""
        d = dict(d or {})
        names = (
            "model_name",
            "model_path",
            "threads",
            "poll_s",
            "tracking_uri",
            "nice",
            "retry_after_s",
            "max_pending",
        )
        known = {k: d.pop(k) for k in names if k in d}
        d.pop("deployment", None)  # Serve options of the arm's deployment (serving.app)
        return cls(name=name, overrides=d, **known)

    def resolver(self) -> Resolver:
        """A function giving the current champion of this arm."""
        return lambda: resolve(self.name, self.model_name, self.model_path, self.tracking_uri)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve and what it is."""

    system: Any  # flywheel.systems.onnx_system.OnnxSystem
    champion: Champion
    key: tuple[str, str, int, int]


def segments_of(annotation: Any) -> list[dict[str, Any]]:
    """``[{start, end, speaker}]`` (seconds, rounded to the millisecond) from an annotation."""
    return [{"start": round(s, 3), "end": round(e, 3), "speaker": spk} for s, e, spk in turns_of(annotation)]


class Arm:
    """A named arm; ``diarize`` answers with segments and the model version that produced them."""

    def __init__(self, spec: ArmSpec, resolver: Resolver | None = None):
        self.spec = spec
        self.name = spec.name
        self._resolver = resolver or spec.resolver()
        self._model: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0
        self._warned_fallback = False  # warn once per outage that the release fallback is refused

    # -- loading --------------------------------------------------------------------------------
    def _build(self, champion: Champion) -> LoadedModel:
        from flywheel.systems import available_systems, get_system
        from flywheel.systems.onnx_system import OnnxSystem

        key = champion.key
        if champion.sha256 is not None:  # a gated version: the file must be the one the gate evaluated
            from serving.champion import file_version

            actual = file_version(champion.path)
            if actual != f"sha256:{champion.sha256[:12]}":
                raise RefusedModel(
                    f"REFUSED {champion.model_name} v{champion.version}: {champion.path} has {actual}, the "
                    f"gate evaluated sha256:{champion.sha256[:12]} (file replaced after the check)"
                )
        # the settings the gate evaluated the model with, then explicit Serve-config overrides
        options = {
            "model_path": champion.path,
            "threads": self.spec.threads,
            **(champion.pipeline or {}),
            **self.spec.overrides,
        }
        if champion.model_name in available_systems():  # fast-cnn, distilhubert, teacher
            system = get_system(champion.model_name, **options)
        else:  # another registered ONNX model of the arms' kind
            system = OnnxSystem(champion.model_name, **options)
        return LoadedModel(system, champion, key)

    def refresh(self) -> bool:
        """Load the champion if it changed; returns True when a new model was swapped in.

        A failure to resolve or load keeps the current model (and is logged).
        """
        with self._swap_lock:
            try:
                champion = self._resolver()
                if champion is None:
                    return False
                key = champion.key
                if self._model is not None and self._model.key == key:
                    return False
                if self._keeps_registry_model(champion):
                    return False
                try:
                    loaded = self._build(champion)
                except RefusedModel as err:
                    _loud(
                        f"arm {self.name}: {err}; "
                        + (
                            "keeping the current model"
                            if self._model
                            else "falling back to the release model"
                        )
                    )
                    if self._model is not None:
                        return False
                    fallback = release_champion(champion.model_name)
                    if fallback is None:
                        return False
                    loaded = self._build(fallback)
            except Exception as err:
                log.error("arm %s: could not load its champion: %s", self.name, err)
                return False
            old = self._model
            self._model = loaded  # atomic swap; requests in flight keep their reference
            self._warned_fallback = False
            if old is not None:
                self.reloads += 1
                name, before, after = champion.model_name, old.champion.version, champion.version
                log.info("arm %s: %s %s -> %s", self.name, name, before, after)
            return True

    def _keeps_registry_model(self, champion: Champion) -> bool:
        """An MLflow champion is never replaced by the release fallback at runtime: the registry
        answers with the release model when MLflow is unreachable (or its lookup fails), and an
        outage must not swap the served model. Only another MLflow version (or a restart) does."""
        current = self._model
        if current is None or current.champion.source != "mlflow" or champion.source != "release":
            return False
        if not self._warned_fallback:
            log.warning(
                "arm %s: the registry offers the release model (MLflow unreachable?); keeping %s v%s",
                self.name,
                current.champion.model_name,
                current.champion.version,
            )
            self._warned_fallback = True
        return True

    @property
    def available(self) -> bool:
        """Whether a model is loaded."""
        return self._model is not None

    @property
    def model(self) -> LoadedModel:
        """The current model (raises if the arm never found one)."""
        model = self._model
        if model is None:
            raise LookupError(f"arm {self.name!r} has no model")
        return model

    def describe(self) -> dict[str, Any]:
        """Name, model, version and source of the current model (for /v1/models)."""
        model = self._model
        if model is None:
            return {"arm": self.name, "available": False}
        c = model.champion
        return {
            "arm": self.name,
            "available": True,
            "model": c.model_name,
            "model_version": c.version,
            "source": c.source,
            "path": str(Path(c.path).name),
            "der": c.der,
            "reloads": self.reloads,
        }

    # -- serving --------------------------------------------------------------------------------
    def diarize(self, samples: np.ndarray, num_speakers: int | None = None) -> dict[str, Any]:
        """Segments of ``samples`` (16 kHz mono) plus the model that made them; ``num_speakers``:
        the number of speakers when the caller knows it (default: estimated; see
        :mod:`serving.speaker_count` for what happens when the audio has fewer)."""
        from serving.speaker_count import diarize_with_count

        model = self.model  # one reference for the whole request
        annotation, warnings = diarize_with_count(model.system, samples, num_speakers)
        segments = segments_of(annotation)
        return {
            "arm": self.name,
            "model": model.champion.model_name,
            "model_version": model.champion.version,
            "segments": segments,
            "num_speakers": len({s["speaker"] for s in segments}),
            "warnings": warnings,
        }

    # -- hot reload -----------------------------------------------------------------------------
    def start_polling(self, poll_s: float | None = None) -> None:
        """Check for a new champion every ``poll_s`` seconds in a daemon thread (0: never)."""
        period = self.spec.poll_s if poll_s is None else poll_s
        if period <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(period):
                self.refresh()

        self._thread = threading.Thread(target=loop, name=f"champion-poll-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
