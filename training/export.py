"""Export a trained checkpoint to ONNX, optimise it with onnxruntime, optionally quantise it to int8,
and check parity against PyTorch (fails loudly above tolerance).

The exported graph takes log-mel features ``(batch, n_mels, frames)`` (dynamic batch and length) and
returns ``(logprobs, embeddings)``; the feature front-end is :func:`flywheel.features.log_mel`, shared
exactly with training. Model metadata (type, chunk and frame length, feature config) is embedded.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from flywheel.features import FeatureConfig
from flywheel.onnx_model import METADATA_KEY, ModelMetadata, OnnxSegmenter, session_options
from training.models.registry import build_model

OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")
DEFAULT_TOLERANCE = {"fp32": 1e-3, "int8": 0.05}


class ParityError(RuntimeError):
    """The ONNX model disagrees with PyTorch beyond tolerance."""


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a ``best.pt``/``last.pt`` checkpoint and load its weights."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model_type = ckpt["model_type"]
    model = build_model(model_type, **{k: v for k, v in ckpt["config"].items()})
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def export_onnx(
    checkpoint: str | Path,
    out_path: str | Path,
    optimization: str = "all",
    quantize: str | None = None,
    tolerance: float | None = None,
    n_mels: int | None = None,
) -> dict[str, Any]:
    """Export, optimise, (quantise), embed metadata and verify parity; returns a report dict.

    Raises:
        ParityError: max |onnx - torch| of the powerset probabilities above ``tolerance``.
    """
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization must be one of {OPTIMIZATION_LEVELS}")
    if quantize not in (None, "int8"):
        raise ValueError("quantize must be None or 'int8'")
    model, ckpt = load_checkpoint(checkpoint)
    chunk = ckpt["chunk"]
    feats_cfg = FeatureConfig(n_mels=n_mels or model.cfg.n_mels)
    frames = int(round(chunk["chunk_s"] * 16000)) // feats_cfg.hop
    example = torch.randn(2, feats_cfg.n_mels, frames)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(raw),
                input_names=["features"],
                output_names=["logprobs", "embeddings"],
                dynamic_shapes=({0: torch.export.Dim("batch"), 2: torch.export.Dim("frames")},),
                dynamo=True,
                verbose=False,
                external_data=False,
            )
        current = raw
        if optimization != "disabled":
            opt = Path(tmp) / "opt.onnx"
            so = session_options(1, optimization)
            so.optimized_model_filepath = str(opt)
            ort.InferenceSession(str(current), so, providers=["CPUExecutionProvider"])
            current = opt
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            q = Path(tmp) / "int8.onnx"
            quantize_dynamic(
                str(current), str(q), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
            )
            current = q
        proto = onnx.load(str(current))
        meta = ModelMetadata(
            ckpt["model_type"],
            chunk["chunk_s"],
            chunk["frame_s"],
            feats_cfg,
            extra={
                "dev_der": ckpt.get("dev_der"),
                "threshold": ckpt.get("threshold"),
                "optimization": optimization,
                "quantize": quantize or "none",
            },
        )
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, meta.to_json()
        onnx.save(proto, str(out_path))

    tolerance = tolerance if tolerance is not None else DEFAULT_TOLERANCE["int8" if quantize else "fp32"]
    diff = parity(model, out_path, feats_cfg.n_mels, frames)
    report = {
        "onnx": str(out_path),
        "bytes": out_path.stat().st_size,
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "optimization": optimization,
        "quantize": quantize or "none",
    }
    if diff > tolerance:
        raise ParityError(f"ONNX/PyTorch parity failed: max abs diff {diff:.3g} > tolerance {tolerance:g}")
    return report


def parity(model: torch.nn.Module, onnx_path: Path, n_mels: int, frames: int, seed: int = 0) -> float:
    """Max abs difference of powerset probabilities and embeddings between torch and onnxruntime."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((3, n_mels, frames)) * 2 - 5).astype(np.float32)
    with torch.no_grad():
        t_lp, t_emb = model(torch.from_numpy(x))
    o_lp, o_emb = OnnxSegmenter(onnx_path)(x)
    return float(max(np.abs(np.exp(o_lp) - t_lp.exp().numpy()).max(), np.abs(o_emb - t_emb.numpy()).max()))
