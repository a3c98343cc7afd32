"""The neural arms (``fast-cnn``, ``distilhubert``) as diarization systems, run with onnxruntime only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel.config import REPO_ROOT, load_params
from flywheel.onnx_model import OnnxSegmenter
from flywheel.systems.neural import NeuralDiarizer, NeuralParams

RELEASE_DIR = REPO_ROOT / "models" / "release"


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
        config.update({k: v for k, v in overrides.items() if v is not None})
        path = Path(model_path or config.get("model_path") or release_model_path(name))
        if not path.is_absolute() and not path.exists():
            path = REPO_ROOT / path
        segmenter = OnnxSegmenter(path, threads=threads)
        meta = segmenter.metadata
        super().__init__(
            segmenter, meta.chunk_s, meta.frame_s, NeuralParams.from_dict(config), meta.features, name
        )
        self.model_path = path


def FastCNNSystem(**options: Any) -> OnnxSystem:
    """The speed arm."""
    return OnnxSystem("fast-cnn", **options)


def DistilHubertSystem(**options: Any) -> OnnxSystem:
    """The accuracy arm."""
    return OnnxSystem("distilhubert", **options)
