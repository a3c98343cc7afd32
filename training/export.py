"""Export a trained checkpoint to ONNX, optimise it with onnxruntime, optionally quantise it to int8,
and check parity against PyTorch (fails loudly above tolerance).

The exported graph takes the model input of :func:`flywheel.features.model_input` (log-mel features
``(batch, n_mels, frames)`` for the Fast CNN, the waveform ``(batch, samples)`` for DistilHuBERT), shared
exactly with training, and returns ``(logprobs, embeddings)``. Model metadata (type, chunk and frame
length, feature config) is embedded, with the pipeline settings the model is to be served with
(``params.yaml: systems.<model type>`` at export, or ``pipeline=``; see
:func:`flywheel.onnx_model.stamp_pipeline` to re-stamp a file after tuning).

int8 (``quantize="int8"``): log-mel models get dynamic int8 MatMul/Gemm; DistilHuBERT, whose cost is
in its convolutional feature encoder (where dynamic ConvInteger is slower than float), is quantised
statically (QLinearConv/QLinearMatMul) with activation ranges calibrated on real dev conversations.
``quantize="int8-static"`` asks for the static method for any model: the Fast CNN's pointwise and
depthwise convolutions are Conv nodes that dynamic quantisation leaves in float, so its release model
is static int8 (0.9 ms instead of 2.8 ms per 5 s chunk here, the same dev DER).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from flywheel.audio import SAMPLE_RATE
from flywheel.features import FeatureConfig, model_input
from flywheel.onnx_model import METADATA_KEY, ModelMetadata, OnnxSegmenter, session_options
from training.models.registry import build_model

OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")
DEFAULT_TOLERANCE = {"fp32": 1e-3, "int8": 0.05, "int8-static": 0.25}
CALIBRATION_CHUNKS = 32
# model settings that change inference only, not the weights: taken from params.yaml at export
# (experiments/tune_pooling.py tunes the pooling power after training)
INFERENCE_OPTIONS = ("embedding_pool_power",)


def export_pipeline(model_type: str) -> dict[str, Any]:
    """The pipeline settings of ``params.yaml: systems.<model_type>`` (what an export carries)."""
    from flywheel.config import load_params
    from flywheel.systems.onnx_system import pipeline_settings

    return pipeline_settings(load_params().get("systems", {}).get(model_type, {}))


class ParityError(RuntimeError):
    """The ONNX model disagrees with PyTorch beyond tolerance."""


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a ``best.pt``/``last.pt`` checkpoint and load its weights.

    The architecture is the checkpoint's; inference options (:data:`INFERENCE_OPTIONS`, tuned after
    training) come from today's params.yaml.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model_type = ckpt["model_type"]
    config = {k: v for k, v in ckpt["config"].items() if k not in INFERENCE_OPTIONS}
    model = build_model(model_type, **config)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def checkpoint_features(
    model: torch.nn.Module, ckpt: dict[str, Any], n_mels: int | None = None
) -> FeatureConfig:
    """The model input configuration a checkpoint was trained with (log-mel for older checkpoints)."""
    stored = dict(ckpt.get("features") or {})
    if stored.get("kind", "log_mel") == "log_mel":
        stored["n_mels"] = n_mels or getattr(model.cfg, "n_mels", FeatureConfig.n_mels)
    return FeatureConfig(**stored)


def example_input(feats: FeatureConfig, num_samples: int, batch: int, seed: int = 0) -> np.ndarray:
    """A random model input of the right shape (speech-like levels) for tracing and parity."""
    rng = np.random.default_rng(seed)
    if feats.kind == "waveform":
        return (rng.standard_normal((batch, num_samples)) * 0.1).astype(np.float32)
    frames = num_samples // feats.hop
    return (rng.standard_normal((batch, feats.n_mels, frames)) * 2 - 5).astype(np.float32)


def calibration_inputs(
    feats: FeatureConfig, num_samples: int, data_dir: Path | None = None, count: int = CALIBRATION_CHUNKS
) -> list[np.ndarray]:
    """Model inputs of ``count`` chunks of real dev conversations (random input when none are built)."""
    from flywheel.audio import load_audio
    from flywheel.config import get_settings

    root = Path(data_dir or get_settings().data_dir) / "conversations"
    wavs = sorted(root.glob("*/dev/*.wav"))
    chunks: list[np.ndarray] = []
    rng = np.random.default_rng(0)
    for wav in wavs:
        audio = load_audio(wav)
        if len(audio) < num_samples:
            continue
        for start in rng.integers(0, len(audio) - num_samples + 1, size=4):
            chunks.append(model_input(audio[start : start + num_samples], feats)[None])
        if len(chunks) >= count:
            break
    if not chunks:
        print(f"no dev conversations under {root}: calibrating int8 ranges on random input")
        chunks = [example_input(feats, num_samples, 1, seed) for seed in range(4)]
    return chunks[:count]


def export_onnx(
    checkpoint: str | Path,
    out_path: str | Path,
    optimization: str = "all",
    quantize: str | None = None,
    tolerance: float | None = None,
    n_mels: int | None = None,
    data_dir: Path | None = None,
    pipeline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export, optimise, (quantise), embed metadata and verify parity; returns a report dict.

    ``data_dir``: where dev conversations are found for static int8 calibration (waveform models).
    ``pipeline``: the pipeline settings the file carries (default: ``params.yaml:
    systems.<model type>`` now).

    Raises:
        ParityError: max |onnx - torch| of the powerset probabilities or embeddings above ``tolerance``.
    """
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization must be one of {OPTIMIZATION_LEVELS}")
    if quantize not in (None, "int8", "int8-static"):
        raise ValueError("quantize must be None, 'int8' or 'int8-static'")
    model, ckpt = load_checkpoint(checkpoint)
    chunk = ckpt["chunk"]
    feats_cfg = checkpoint_features(model, ckpt, n_mels)
    num_samples = int(round(chunk["chunk_s"] * SAMPLE_RATE))
    example = torch.from_numpy(example_input(feats_cfg, num_samples, 2))
    if feats_cfg.kind == "waveform":
        dynamic = ({0: torch.export.Dim("batch")},)  # fixed chunk length: the diarizer only sends chunks
    else:
        dynamic = ({0: torch.export.Dim("batch"), 2: torch.export.Dim("frames")},)
    method = None
    if quantize == "int8":
        method = "static" if feats_cfg.kind == "waveform" else "dynamic"
    elif quantize == "int8-static":  # any model: QLinearConv/QLinearMatMul calibrated on dev chunks
        method = "static"
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
                dynamic_shapes=dynamic,
                dynamo=True,
                verbose=False,
                external_data=False,
            )
        current = raw
        if method == "static":
            # calibrate on the float graph before onnxruntime fuses it (fused ops are not quantisable)
            current = _quantize_static(
                current, Path(tmp), calibration_inputs(feats_cfg, num_samples, data_dir)
            )
        if optimization != "disabled":
            opt = Path(tmp) / "opt.onnx"
            so = session_options(1, optimization)
            so.optimized_model_filepath = str(opt)
            ort.InferenceSession(str(current), so, providers=["CPUExecutionProvider"])
            current = opt
        if method == "dynamic":
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
                "epoch": ckpt.get("epoch"),
                "averaged_epochs": ckpt.get("averaged_epochs"),
                "averaged_checkpoints": ckpt.get("averaged_checkpoints"),
                "embedding_pool_power": getattr(model, "pool_power", None),
                "optimization": optimization,
                "quantize": quantize or "none",
                "quantize_method": method or "none",
            },
            pipeline=pipeline if pipeline is not None else export_pipeline(ckpt["model_type"]),
        )
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, meta.to_json()
        staged = Path(tmp) / "final.onnx"
        onnx.save(proto, str(staged))

        if tolerance is None:
            kind = "int8-static" if method == "static" else "int8" if method else "fp32"
            tolerance = DEFAULT_TOLERANCE[kind]
        diff = parity(model, staged, example_input(feats_cfg, num_samples, 3, seed=1))
        if diff > tolerance:  # out_path (e.g. the release model) is left as it was
            raise ParityError(
                f"ONNX/PyTorch parity failed: max abs diff {diff:.3g} > tolerance {tolerance:g}; "
                f"{out_path} not written"
            )
        shutil.move(str(staged), out_path)
    report = {
        "onnx": str(out_path),
        "bytes": out_path.stat().st_size,
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "optimization": optimization,
        "quantize": quantize or "none",
        "quantize_method": method or "none",
        "pipeline": meta.pipeline,
    }
    return report


def _quantize_static(model_path: Path, tmp: Path, inputs: list[np.ndarray]) -> Path:
    """QOperator int8 (QLinearConv/QLinearMatMul), activation ranges from ``inputs``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([{"features": x} for x in inputs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    pre = tmp / "pre.onnx"
    quant_pre_process(str(model_path), str(pre), skip_symbolic_shape=True)
    out = tmp / "int8.onnx"
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QOperator,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
    )
    return out


def parity(model: torch.nn.Module, onnx_path: Path, x: np.ndarray) -> float:
    """Max abs difference of powerset probabilities and embeddings between torch and onnxruntime."""
    with torch.no_grad():
        t_lp, t_emb = model(torch.from_numpy(x))
    o_lp, o_emb = OnnxSegmenter(onnx_path)(x)
    return float(max(np.abs(np.exp(o_lp) - t_lp.exp().numpy()).max(), np.abs(o_emb - t_emb.numpy()).max()))
