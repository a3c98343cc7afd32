"""Which data epoch a continued recipe starts at: recorded by the checkpoint it continues, not by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.train import TrainConfig, average_checkpoints, data_epoch_after, first_data_epoch


def _best(path: Path, epoch: int | None, **extra: object) -> Path:
    """A tiny stand-in for ``best.pt`` (as ``_save_best`` writes it; the weights do not matter)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"model": {"w": torch.ones(2)}, "model_type": "fast-cnn", "config": {}, "epoch": epoch}
    torch.save({**ckpt, **extra}, path)
    return path


def _last(path: Path, state: dict) -> Path:
    """A tiny stand-in for ``last.pt``: the run's progress lives in its ``state``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.ones(2)}, "state": state}, path)
    return path


def test_the_recorded_data_epoch_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # best at epoch 3 of a run that started at data epoch 7: its weights saw data epochs 7-9
    best = _best(tmp_path / "a" / "best.pt", epoch=3, data_epoch_next=10)
    assert data_epoch_after(best) == 10
    last = _last(tmp_path / "a" / "last.pt", {"epoch": 5, "data_epoch_offset": 7, "data_epoch_next": 12})
    assert data_epoch_after(last) == 12
    assert "note" not in capsys.readouterr().out
    cfg = TrainConfig(init_from=str(best))
    assert first_data_epoch(cfg, {}) == 10


def test_a_checkpoint_without_the_field_falls_back_to_its_epoch_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Older checkpoints store epochs done (best.pt ``epoch``, last.pt ``state["epoch"]``; the first
    epoch is 1): a run that started at data epoch 0 used data epochs 0 .. epoch - 1."""
    best = _best(tmp_path / "old" / "best.pt", epoch=6)
    assert data_epoch_after(best) == 6
    assert "does not record data_epoch_next" in capsys.readouterr().out
    last = _last(tmp_path / "old" / "last.pt", {"epoch": 8, "step": 448})
    assert data_epoch_after(last) == 8
    assert "assuming its run started at data epoch 0" in capsys.readouterr().out
    soup = _best(tmp_path / "soup" / "best.pt", epoch=None)  # an average of old checkpoints
    with pytest.raises(ValueError, match="set data_epoch_offset"):
        data_epoch_after(soup)
    with pytest.raises(FileNotFoundError):
        data_epoch_after(tmp_path / "missing.pt")
    pretrained = tmp_path / "encoder"
    pretrained.mkdir()
    assert data_epoch_after(pretrained) == 0  # a pretrained encoder never saw these conversations


def test_an_explicit_offset_wins(tmp_path: Path) -> None:
    best = _best(tmp_path / "a" / "best.pt", epoch=3, data_epoch_next=10)
    assert first_data_epoch(TrainConfig(init_from=str(best), data_epoch_offset=4), {}) == 4
    assert first_data_epoch(TrainConfig(init_from=str(best), data_epoch_offset=0), {}) == 0
    # a resumed run keeps the offset it started with; without init_from and state: 0
    assert first_data_epoch(TrainConfig(init_from=str(best)), {"data_epoch_offset": 7}) == 7
    assert (
        first_data_epoch(TrainConfig(init_from=str(best), data_epoch_offset=4), {"data_epoch_offset": 7}) == 4
    )
    assert first_data_epoch(TrainConfig(), {}) == 0


def test_a_soup_starts_after_the_data_of_every_ingredient(tmp_path: Path) -> None:
    a = _best(tmp_path / "a" / "best.pt", epoch=12, data_epoch_next=47)
    b = _best(tmp_path / "b" / "best.pt", epoch=10, data_epoch_next=61)
    assert average_checkpoints([a, b], tmp_path / "soup" / "best.pt")["data_epoch_next"] == 61
    assert data_epoch_after(tmp_path / "soup" / "best.pt") == 61
    old = _best(tmp_path / "old" / "best.pt", epoch=5)
    assert average_checkpoints([a, old], tmp_path / "soup2" / "best.pt")["data_epoch_next"] is None
