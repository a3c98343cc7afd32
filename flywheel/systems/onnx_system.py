"""The neural arms (``fast-cnn``, ``distilhubert``) as diarization systems, run with onnxruntime only.

Pipeline settings, in increasing precedence: ``params.yaml: systems.<name>`` (the fallback for old
files), the settings the ONNX file carries (``metadata_props["flywheel"]["pipeline"]``, what the
model was tuned and gated with), explicit keyword overrides (tuning, comparisons, a Serve config).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from flywheel.config import REPO_ROOT, load_params
from flywheel.onnx_model import OnnxSegmenter
from flywheel.systems.neural import NeuralDiarizer, NeuralParams, without_retired_settings

RELEASE_DIR = REPO_ROOT / "models" / "release"
# keys of systems.<name> that are not pipeline settings of the model (where it is, how it is batched)
NOT_PIPELINE = frozenset({"model_path", "batch_size"})


def pipeline_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The pipeline settings in a ``systems.<name>`` mapping or a model's metadata (NeuralParams
    fields, less batching; a retired setting at the value the pipeline now always uses is dropped,
    at another value refused: :func:`flywheel.systems.neural.without_retired_settings`)."""
    names = {f.name for f in fields(NeuralParams)} - NOT_PIPELINE
    return {k: v for k, v in without_retired_settings(config).items() if k in names}


def release_model_path(name: str) -> Path:
    """The ONNX release model kept in the repository for ``name`` (for the ``teacher``: its
    segmentation model, exported by ``scripts/setup_teacher.sh``, with CAM++ beside it)."""
    if name == "teacher":
        from flywheel.pretrained import SEGMENTATION_ONNX

        return SEGMENTATION_ONNX
    return RELEASE_DIR / f"{name}.onnx"


class OnnxSystem(NeuralDiarizer):
    """A :class:`NeuralDiarizer` whose backend is an exported ONNX model."""

    def __init__(self, name: str, model_path: str | Path | None = None, threads: int = 1, **overrides: Any):
        config = dict(load_params().get("systems", {}).get(name, {}))
        given = {k: v for k, v in overrides.items() if v is not None}
        path = Path(
            model_path or given.get("model_path") or config.get("model_path") or release_model_path(name)
        )
        if not path.is_absolute() and not path.exists():
            path = REPO_ROOT / path
        segmenter = OnnxSegmenter(path, threads=threads)
        meta = segmenter.metadata
        carried = pipeline_settings(meta.pipeline)
        config.update(carried)
        config.update(given)
        params = NeuralParams.from_dict(config)
        super().__init__(segmenter, meta.chunk_s, meta.frame_s, params, meta.features, name)
        self.model_path = path
        #: where the settings came from: "model" (carried by the file) or "params.yaml" (old file)
        self.pipeline_source = "model" if carried else "params.yaml"
        #: the pipeline settings this system runs with (what the gate records)
        self.pipeline_settings = pipeline_settings(
            {f.name: getattr(params, f.name) for f in fields(NeuralParams)}
        )


def FastCNNSystem(**options: Any) -> OnnxSystem:
    """The speed arm."""
    return OnnxSystem("fast-cnn", **options)


def DistilHubertSystem(**options: Any) -> OnnxSystem:
    """The accuracy arm."""
    return OnnxSystem("distilhubert", **options)
