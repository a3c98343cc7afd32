"""End to end on the smoke profile: train (< 2 min) -> export ONNX (parity) -> diarize with onnxruntime."""

from __future__ import annotations

from collections.abc import Callable
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


@pytest.mark.parametrize("quantize", [None, "int8", "int8-static"])
def test_export_parity(trained: Path, tmp_path: Path, quantize: str | None) -> None:
    report = export_onnx(trained, tmp_path / "m.onnx", optimization="extended", quantize=quantize)
    assert report["max_abs_diff"] <= report["tolerance"]
    assert report["bytes"] < 10e6


def test_export_fails_loudly_on_impossible_tolerance(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the previous model")
    with pytest.raises(ParityError, match="not written"):
        export_onnx(trained, out, quantize="int8", tolerance=0.0)
    assert out.read_bytes() == b"the previous model"  # a failed export leaves the old file alone


def test_onnx_system_diarizes_without_torch(
    trained: Path, tmp_path: Path, smoke_data: Path, diarize_without_torch: Callable
) -> None:
    onnx_path = tmp_path / "fast-cnn.onnx"
    export_onnx(trained, onnx_path)
    wav = next((smoke_data / "conversations" / "smoke" / "test").glob("*.wav"))
    speakers, speech = diarize_without_torch("fast-cnn", onnx_path, wav).split()
    assert int(speakers) >= 0 and float(speech) >= 0.0


def test_onnx_metadata_round_trip(trained: Path, tmp_path: Path) -> None:
    from flywheel.onnx_model import OnnxSegmenter

    export_onnx(trained, tmp_path / "m.onnx")
    seg = OnnxSegmenter(tmp_path / "m.onnx")
    assert seg.metadata.model_type == "fast-cnn" and seg.metadata.chunk_s == 5.0
    lp, emb = seg(np.zeros((2, 64, 500), dtype=np.float32))
    assert lp.shape == (2, 125, 7) and emb.shape[:2] == (2, 3)


def test_recipe_with_new_voices_stops_after_its_epoch_budget(
    trained: Path, smoke_data: Path, params: dict, tmp_path: Path
) -> None:
    """`stop_after` ends the run early; formant-warped voices widen the speaker head (one per copy);
    `architecture` grows the model it starts from by one block; `chunk` trains at another chunk
    length, which the checkpoint carries to export and inference."""
    import copy

    import torch

    from pipelines.inventory import Inventory
    from training.train import train

    params = copy.deepcopy(params)
    recipe = params["train"]["fast-cnn"]["smoke"]
    recipe.update(epochs=3, stop_after=1, formant_warps=[0.9], formant_warp_prob=0.5, train_hours=0.02)
    dilations = [*params["models"]["fast-cnn"]["dilations"], 4]
    recipe.update(init_from=str(trained), architecture={"dilations": dilations})
    recipe.update(chunk={"chunk_s": 4.0}, dev_pipeline={"step_s": 1.0})
    summary = train("fast-cnn", "smoke", out_dir=tmp_path, resume=False, params=params, data_dir=smoke_data)
    assert summary["epochs"] == 1
    best = torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=False)
    assert best["config"]["dilations"] == tuple(dilations)  # export rebuilds the grown model
    assert best["chunk"]["chunk_s"] == 4.0
    state = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    assert f"blocks.{len(dilations) - 1}.pw2.weight" in state["model"]
    # no data_epoch_offset in the recipe: the run starts right after the data its init_from saw
    parent = torch.load(trained, map_location="cpu", weights_only=False)["data_epoch_next"]
    assert parent == 1  # the smoke model: one epoch, data epoch 0
    assert state["state"]["data_epoch_offset"] == parent and best["data_epoch_next"] == parent + 1
    recorded = len(Inventory.load(smoke_data / "inventory" / "smoke").by_speaker("train"))
    head = next(v for k, v in state["speaker_head"].items() if v.ndim == 2)
    assert head.shape[0] == 2 * recorded  # recorded speakers + their 0.9 copies


def test_weights_of_the_last_epochs_are_averaged_and_kept_when_better(
    smoke_data: Path, params: dict, tmp_path: Path
) -> None:
    """`average_last`: per-epoch weights are kept, their mean is scored on dev, and best.pt says
    which weights it holds; `dev_from_epoch` leaves the earlier epochs unscored."""
    import copy

    import torch

    from training.train import average_weights, train

    params = copy.deepcopy(params)
    params["train"]["fast-cnn"]["smoke"].update(
        epochs=2, patience=2, average_last=2, dev_from_epoch=2, train_hours=0.02
    )
    summary = train("fast-cnn", "smoke", out_dir=tmp_path, resume=False, params=params, data_dir=smoke_data)
    assert sorted(p.name for p in (tmp_path / "epochs").iterdir()) == ["epoch_001.pt", "epoch_002.pt"]
    assert [r["dev_der"] is None for r in summary["history"]] == [True, False]
    averaged = summary["averaged"]
    assert averaged["averaged_epochs"] == [1, 2] and averaged["dev_der"] >= 0.0
    best = torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=False)
    if averaged["dev_der"] < averaged["best_epoch_dev_der"]:
        assert best["averaged_epochs"] == [1, 2] and best["dev_der"] == averaged["dev_der"]
    else:
        assert best["averaged_epochs"] is None and best["dev_der"] == averaged["best_epoch_dev_der"]
        assert best["epoch"] == 2  # epoch 1 was not scored, so it cannot be the best
    states = [torch.load(tmp_path / "epochs" / f"epoch_00{e}.pt", map_location="cpu") for e in (1, 2)]
    mean = average_weights(states)
    name = next(k for k, v in states[0].items() if v.is_floating_point())
    assert torch.allclose(mean[name], (states[0][name] + states[1][name]) / 2)
    # resuming a finished run does not average again
    again = train("fast-cnn", "smoke", out_dir=tmp_path, resume=True, params=params, data_dir=smoke_data)
    assert again["averaged"] == averaged


def test_tune_pooling_scores_powers_and_writes_params(
    trained: Path, smoke_data: Path, tmp_path: Path
) -> None:
    """`experiments.tune_pooling`: dev DER per pooling power; the best goes into params.yaml."""
    import json

    from experiments.tune_pooling import main

    params_file = tmp_path / "params.yaml"
    params_file.write_text("models:\n  fast-cnn:\n    embedding_pool_power: 1   # tuned\n")
    main(
        checkpoint=trained,
        dev_set=smoke_data / "conversations" / "smoke" / "dev",
        powers="1,4",
        thresholds="0.5,0.7",
        limit=1,
        write_params=True,
        params_file=params_file,
        output=tmp_path / "pooling.json",
    )
    result = json.loads((tmp_path / "pooling.json").read_text())
    assert [row["power"] for row in result["rows"]] == [1.0, 4.0]
    assert all(0.0 <= row["der"] <= 2.0 for row in result["rows"])
    assert f"embedding_pool_power: {result['best']['power']:g}   # tuned" in params_file.read_text()
