"""onnxruntime wrapper for exported segmentation+embedding models (no torch on this path).

The exported file carries its own metadata (``metadata_props["flywheel"]``, JSON): model type,
feature configuration, chunk and frame length, so inference cannot disagree with training about
the model input, and ``pipeline``: the pipeline settings the model was tuned with (threshold,
stitching, smoothing, step, ...: ``params.yaml: systems.<name>`` at export or at
:func:`stamp_pipeline`), which :class:`flywheel.systems.onnx_system.OnnxSystem` uses, so a model is
served as it was evaluated whatever ``params.yaml`` the serving checkout has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from flywheel.features import FeatureConfig

METADATA_KEY = "flywheel"


@dataclass
class ModelMetadata:
    """What inference needs to know about an exported model."""

    model_type: str
    chunk_s: float
    frame_s: float
    features: FeatureConfig = field(default_factory=FeatureConfig)
    extra: dict[str, Any] = field(default_factory=dict)
    pipeline: dict[str, Any] = field(default_factory=dict)  # empty: an old file (params.yaml applies)

    def to_json(self) -> str:
        """The ``metadata_props["flywheel"]`` value."""
        d = {
            "model_type": self.model_type,
            "chunk_s": self.chunk_s,
            "frame_s": self.frame_s,
            "features": self.features.__dict__,
            "extra": self.extra,
        }
        if self.pipeline:
            d["pipeline"] = self.pipeline
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse a ``metadata_props["flywheel"]`` value (files without ``pipeline`` read as empty)."""
        d = json.loads(text)
        return cls(
            d["model_type"],
            d["chunk_s"],
            d["frame_s"],
            FeatureConfig(**d["features"]),
            d.get("extra", {}),
            dict(d.get("pipeline") or {}),
        )


def session_options(threads: int = 1, optimization: str = "all") -> ort.SessionOptions:
    """Session options with pinned thread counts and a graph optimisation level."""
    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f"optimization must be one of {sorted(levels)}, got {optimization!r}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = levels[optimization]
    return so


class OnnxSegmenter:
    """``features (B, n_mels, T) -> (powerset log-probs (B, T', 7), embeddings (B, 3, D))``."""

    def __init__(self, path: str | Path, threads: int = 1, optimization: str = "all"):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        self.session = ort.InferenceSession(
            str(self.path), session_options(threads, optimization), providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(
                f"{self.path} has no '{METADATA_KEY}' metadata: export it with `flywheel export-onnx`"
            )
        self.metadata = ModelMetadata.from_json(meta[METADATA_KEY])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logprobs, embeddings = self.session.run(
            None, {self.input_name: features.astype(np.float32, copy=False)}
        )
        return logprobs, embeddings


def stamp_pipeline(src: str | Path, pipeline: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``pipeline`` into the flywheel metadata of an ONNX file, weights untouched.

    Only ``metadata_props["flywheel"]["pipeline"]`` changes; the graph and its initializers are
    copied as they are. ``out`` defaults to ``src`` (replaced atomically). Returns the written path.

    Raises:
        ValueError: ``src`` has no flywheel metadata.
    """
    import os
    import tempfile

    import onnx

    src = Path(src)
    out = Path(out) if out is not None else src
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ValueError(f"{src} has no '{METADATA_KEY}' metadata: export it with `flywheel export-onnx`")
    meta = ModelMetadata.from_json(props[METADATA_KEY])
    meta.pipeline = dict(pipeline)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = meta.to_json()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out
