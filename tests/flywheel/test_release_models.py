"""The release models committed to the repository: a fresh clone serves and evaluates without training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flywheel.onnx_model import OnnxSegmenter
from flywheel.systems import get_system
from flywheel.systems.onnx_system import release_model_path

SIZE_LIMIT_MB = {"fast-cnn": 10.0, "distilhubert": 30.0}


@pytest.mark.parametrize("name", sorted(SIZE_LIMIT_MB))
def test_release_model_has_metadata_and_a_card(name: str) -> None:
    path = release_model_path(name)
    assert path.is_file(), f"{path} is missing"
    assert path.stat().st_size <= SIZE_LIMIT_MB[name] * 1e6
    meta = OnnxSegmenter(path).metadata
    assert meta.model_type == name
    card = json.loads(path.with_suffix(".json").read_text())
    assert 0.0 < card["der_gate"] < 1.0 and card["latency_p99_ms"] > 0


@pytest.mark.parametrize("name", sorted(SIZE_LIMIT_MB))
def test_release_model_carries_its_pipeline_settings(name: str) -> None:
    """The file, its card and params.yaml agree on the settings it is served with."""
    import hashlib

    from flywheel.config import load_params
    from flywheel.systems.onnx_system import pipeline_settings

    path = release_model_path(name)
    declared = pipeline_settings(load_params()["systems"][name])
    stored = OnnxSegmenter(path).metadata.pipeline
    carried = pipeline_settings(stored)  # less a retired setting at the value the pipeline now uses
    assert carried == declared, f"re-stamp it: python scripts/stamp_pipeline.py {name}"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["pipeline"] == stored and card["onnx_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert get_system(name).pipeline_source == "model"


def test_a_model_that_carries_a_removed_chunk_weighting_is_refused(tmp_path) -> None:
    """The release models were exported with `chunk_weighting: uniform` (ignored: what stitching always
    does now, see above); a model stamped with the removed "hann" is refused when it loads."""
    from flywheel.onnx_model import stamp_pipeline

    path = release_model_path("fast-cnn")
    stored = OnnxSegmenter(path).metadata.pipeline
    hann = stamp_pipeline(path, {**stored, "chunk_weighting": "hann"}, tmp_path / "hann.onnx")
    with pytest.raises(ValueError, match="chunk_weighting='hann' is no longer supported"):
        get_system("fast-cnn", model_path=hann)


@pytest.mark.parametrize("name", sorted(SIZE_LIMIT_MB))
def test_release_model_diarizes(name: str) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(12 * 16000) / 16000
    voice = np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    audio = (0.2 * voice + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    system = get_system(name)
    annotation = system.diarize(audio, uri="synthetic")
    assert annotation.get_timeline().extent().end <= 12.0 + 1e-6 if len(annotation) else True
