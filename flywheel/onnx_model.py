"""onnxruntime wrapper for exported segmentation+embedding models (no torch on this path).

The exported file carries its own metadata (``metadata_props["flywheel"]``, JSON): model type,
feature configuration, chunk and frame length, so inference cannot disagree with training about
the model input.
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

    def to_json(self) -> str:
        return json.dumps(
            {
                "model_type": self.model_type,
                "chunk_s": self.chunk_s,
                "frame_s": self.frame_s,
                "features": self.features.__dict__,
                "extra": self.extra,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        d = json.loads(text)
        return cls(
            d["model_type"], d["chunk_s"], d["frame_s"], FeatureConfig(**d["features"]), d.get("extra", {})
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
