"""A/B router: stable hashing, weight-following split, stickiness, unavailable arms, validation."""

from __future__ import annotations

import random

import pytest

from serving.routing import Router, WeightError, hash_unit, parse_weights, validate_weights


def test_hash_is_stable_and_uniform() -> None:
    assert hash_unit("client-42") == hash_unit("client-42")
    assert 0.0 <= hash_unit("") < 1.0
    points = [hash_unit(f"c{i}") for i in range(20000)]
    assert abs(sum(p < 0.5 for p in points) / len(points) - 0.5) < 0.02


def test_sticky_clients_follow_the_weights() -> None:
    router = Router({"fast-cnn": 0.9, "distilhubert": 0.1}, ("fast-cnn", "distilhubert"))
    arms = [router.choose(f"user-{i}") for i in range(20000)]
    assert abs(arms.count("distilhubert") / len(arms) - 0.1) < 0.01
    assert all(router.choose(f"user-{i}") == arms[i] for i in range(200))  # same client, same arm


def test_random_split_without_client_id() -> None:
    router = Router({"a": 0.3, "b": 0.7}, ("a", "b"))
    rng = random.Random(0)
    arms = [router.choose(None, rng) for _ in range(20000)]
    assert abs(arms.count("a") / len(arms) - 0.3) < 0.015


def test_weight_change_moves_only_the_needed_clients() -> None:
    before = Router({"a": 0.9, "b": 0.1}, ("a", "b"))
    after = Router({"a": 0.8, "b": 0.2}, ("a", "b"))
    ids = [f"u{i}" for i in range(5000)]
    moved_to_a = sum(before.choose(i) == "b" and after.choose(i) == "a" for i in ids)
    assert moved_to_a == 0  # growing b never moves a b-client back to a


def test_unavailable_arm_gets_nothing_and_zero_weights_fall_back() -> None:
    router = Router({"fast-cnn": 0.5, "distilhubert": 0.5}, ("fast-cnn",))
    assert router.effective == {"fast-cnn": 1.0}
    assert {router.choose(f"x{i}") for i in range(100)} == {"fast-cnn"}
    only_missing = Router({"distilhubert": 1.0}, ("fast-cnn",))
    assert only_missing.choose("x") == "fast-cnn"  # serving beats refusing
    with pytest.raises(LookupError):
        Router({"a": 1.0}, ()).choose("x")


def test_weights_are_validated() -> None:
    assert parse_weights(["fast-cnn=0.9", "distilhubert=0.1"]) == {"fast-cnn": 0.9, "distilhubert": 0.1}
    for bad in (["fast-cnn"], ["=0.3"], ["a=x"]):
        with pytest.raises(WeightError):
            parse_weights(bad)
    for bad_value in (-0.1, float("nan"), float("inf")):
        with pytest.raises(WeightError):
            validate_weights({"a": bad_value})
