"""Training recipes: what a recipe changes in the training simulation, and only there."""

from __future__ import annotations

import pytest

from training.train import TrainConfig, training_simulation


def test_recipe_overrides_reach_the_training_simulation_only(params: dict) -> None:
    cfg = TrainConfig(
        data_profile="full",
        formant_warps=[0.9, 1.1],
        formant_warp_prob=0.5,
        simulation={"overlap_turn_prob": 0.6, "snr_db": [10, 20]},
    )
    sim = training_simulation(params, cfg)
    assert sim.overlap_turn_prob == 0.6 and sim.snr_db == (10, 20)
    assert sim.formant_warps == (0.9, 1.1) and sim.formant_warp_prob == 0.5
    assert sim.duration_s == tuple(params["profiles"]["full"]["conversations"]["duration_s"])
    assert params["simulation"]["overlap_turn_prob"] != 0.6  # the shared settings are untouched
    plain = training_simulation(params, TrainConfig(data_profile="full"))
    assert plain.overlap_turn_prob == params["simulation"]["overlap_turn_prob"]


def test_unknown_simulation_override_is_refused(params: dict) -> None:
    with pytest.raises(ValueError, match="overlap_prob"):
        training_simulation(params, TrainConfig(data_profile="full", simulation={"overlap_prob": 0.5}))
