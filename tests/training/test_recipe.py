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


def test_a_recipe_states_only_what_differs_from_the_one_it_extends() -> None:
    from flywheel.config import resolve_recipe

    recipes = {
        "base": {"epochs": 7, "lr": 0.002, "teacher": "t.npz"},
        "child": {"extends": "base", "lr": 0.001},
        "grandchild": {"extends": "child", "teacher": None},
    }
    assert resolve_recipe(recipes, "child") == {"epochs": 7, "lr": 0.001, "teacher": "t.npz"}
    assert resolve_recipe(recipes, "grandchild") == {"epochs": 7, "lr": 0.001, "teacher": None}
    with pytest.raises(KeyError, match=r"unknown recipe 'nope'.*choose one of"):
        resolve_recipe(recipes, "nope")
    with pytest.raises(KeyError, match=r"'gone' \(extended by 'orphan'\)"):
        resolve_recipe({"orphan": {"extends": "gone"}}, "orphan")
    with pytest.raises(ValueError, match="loops"):
        resolve_recipe({"a": {"extends": "b"}, "b": {"extends": "a"}}, "a")


def test_every_recipe_in_params_resolves_to_a_valid_config(params: dict) -> None:
    from training.distill import DistillConfig
    from training.train import TrainConfig

    for model, recipes in params["train"].items():
        for name in recipes:
            cfg = TrainConfig.load(model, name, params)
            assert cfg.epochs >= 1 and cfg.batch_size >= 1
    # `extends` in params.yaml: the release DistilHuBERT recipe inherits from `full` what it does not
    # set itself (none of these is a TrainConfig default) and keeps its own values
    finetune = TrainConfig.load("distilhubert", "finetune", params)
    assert finetune.data_profile == "full" and finetune.train_hours == 0.25
    assert finetune.teacher == "teacher/full.npz" and finetune.distill_weight == 2.0
    assert finetune.lr == 0.0001 and finetune.epochs == 2 and finetune.margin_warmup_steps == 0
    for model, recipes in params["distill"].items():
        for name in recipes:
            assert DistillConfig.load(model, name, params).epochs >= 1


def test_train_config_loads_a_chain_of_extended_recipes() -> None:
    """TrainConfig.load resolves `extends` through a chain: inherited lists stay whole, a key set to
    null in a child is not inherited, and the child's own values win."""
    recipes = {
        "base": {"epochs": 7, "lr": 0.002, "teacher": "teacher/full.npz", "stop_after": 4},
        "warped": {"extends": "base", "formant_warps": [0.85, 1.17], "formant_warp_prob": 0.6},
        "leaf": {"extends": "warped", "lr": 0.0005, "teacher": None, "stop_after": None},
    }
    params = {"train": {"fast-cnn": recipes}}
    warped = TrainConfig.load("fast-cnn", "warped", params)
    assert warped.teacher == "teacher/full.npz" and warped.stop_after == 4 and warped.lr == 0.002
    leaf = TrainConfig.load("fast-cnn", "leaf", params)
    assert leaf.formant_warps == [0.85, 1.17] and leaf.formant_warp_prob == 0.6 and leaf.epochs == 7
    assert leaf.teacher is None and leaf.stop_after is None and leaf.lr == 0.0005
    assert leaf.data_epoch_offset is None  # not set anywhere: derived from init_from when training
