"""End to end on the smoke profile: train (< 2 min) -> export ONNX (parity) -> diarize with onnxruntime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.export import ParityError, export_onnx


@pytest.fixture(scope="module")
def trained(smoke_checkpoint: Path) -> Path:
    return smoke_checkpoint


def test_checkpoint_resumes(trained: Path, smoke_data: Path, params: dict) -> None:
    from training.train import train

    summary = train(
        "fast-cnn", "smoke", out_dir=trained.parent, resume=True, params=params, data_dir=smoke_data
    )
    assert summary["steps"] > 0 and summary["epochs"] == 1  # already done: nothing retrained


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_export_parity(trained: Path, tmp_path: Path, quantize: str | None) -> None:
    report = export_onnx(trained, tmp_path / "m.onnx", optimization="extended", quantize=quantize)
    assert report["max_abs_diff"] <= report["tolerance"]
    assert report["bytes"] < 10e6


def test_export_fails_loudly_on_impossible_tolerance(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ParityError):
        export_onnx(trained, tmp_path / "m.onnx", quantize="int8", tolerance=0.0)


def test_onnx_system_diarizes_without_torch(trained: Path, tmp_path: Path, smoke_data: Path) -> None:
    onnx_path = tmp_path / "fast-cnn.onnx"
    export_onnx(trained, onnx_path)
    wav = next((smoke_data / "conversations" / "smoke" / "test").glob("*.wav"))
    code = (
        "import sys; from flywheel.audio import load_audio; "
        "from flywheel.systems import get_system; "
        f"s = get_system('fast-cnn', model_path={str(onnx_path)!r}); "
        f"a = s.diarize(load_audio({str(wav)!r}), uri='x'); "
        "assert 'torch' not in sys.modules, 'torch imported on the inference path'; print(len(a))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 0


def test_onnx_metadata_round_trip(trained: Path, tmp_path: Path) -> None:
    from flywheel.onnx_model import OnnxSegmenter

    export_onnx(trained, tmp_path / "m.onnx")
    seg = OnnxSegmenter(tmp_path / "m.onnx")
    assert seg.metadata.model_type == "fast-cnn" and seg.metadata.chunk_s == 5.0
    lp, emb = seg(np.zeros((2, 64, 500), dtype=np.float32))
    assert lp.shape == (2, 125, 7) and emb.shape[:2] == (2, 3)
