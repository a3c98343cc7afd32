"""Joining or starting the project's Ray (flywheel/ray_runtime.py), against a stand-in ``ray`` module:
what a local start puts in the environment and passes to ``ray.init``, and that joining sets nothing."""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import pytest

from flywheel import ray_runtime


class FakeRay(types.ModuleType):
    def __init__(self, initialized: bool = False):
        super().__init__("ray")
        self.initialized, self.calls = initialized, []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        self.calls.append({"kwargs": kwargs, "env": dict(os.environ)})


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> FakeRay:
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    env = {k: v for k, v in os.environ.items() if k not in ray_runtime.ray_env() and k != "RAY_ADDRESS"}
    monkeypatch.setattr(os, "environ", env)  # what start_ray sets stays in this copy
    return ray


def test_local_start_is_loopback_with_the_core_and_extra_env(
    fake_ray: FakeRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # set by the caller: kept
    monkeypatch.setenv("EXTRA_TWO", "mine")
    ray_runtime.start_ray(num_cpus=2, extra_env={"EXTRA_ONE": "1", "EXTRA_TWO": "theirs"})
    [call] = fake_ray.calls
    kwargs, env = call["kwargs"], call["env"]
    assert kwargs["_node_ip_address"] == kwargs["dashboard_host"] == "127.0.0.1"
    assert kwargs["num_cpus"] == 2 and kwargs["include_dashboard"] is False
    assert kwargs["_system_config"] == {"max_direct_call_object_size": ray_runtime.INLINE_CALL_BYTES}
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["OMP_NUM_THREADS"] == "4"
    assert env["EXTRA_ONE"] == "1" and env["EXTRA_TWO"] == "mine"


def test_joining_a_cluster_sets_no_environment(fake_ray: FakeRay, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    ray_runtime.start_ray(extra_env={"EXTRA_ONE": "1"})
    [call] = fake_ray.calls
    assert call["kwargs"]["address"] == "ray://head:10001"
    assert "EXTRA_ONE" not in call["env"] and "RAY_USAGE_STATS_ENABLED" not in call["env"]
    ray_runtime.start_ray("ray://other:10001")
    assert fake_ray.calls[1]["kwargs"]["address"] == "ray://other:10001"  # the argument wins


def test_a_ray_already_initialised_is_kept(fake_ray: FakeRay) -> None:
    fake_ray.initialized = True
    ray_runtime.start_ray(address="ray://head:10001", num_cpus=2)
    assert fake_ray.calls == []
