"""Operate the Serve application: start Ray on loopback, deploy a config, change A/B weights.

Deployments go through the Serve controller as declarative configs (what ``serve deploy`` sends), so
a later ``serve deploy`` or :func:`set_weights` with only new ``user_config`` reconfigures the
running replicas instead of replacing them.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flywheel import ray_runtime
from flywheel.config import REPO_ROOT
from flywheel.ray_runtime import LOOPBACK
from serving.request_id_header import CALLBACK, CALLBACK_ENV

CONFIG_PATH = REPO_ROOT / "serving" / "serve_config.yaml"
APP_NAME = "flywheel"
INGRESS = "Ingress"


def serve_env(throughput_optimized: bool = True) -> dict[str, str]:
    """The Serve-only part of :func:`ray_env`: Serve's HTTP on loopback, short draining, the proxy
    callback of :mod:`serving.request_id_header`, and the throughput-optimised Serve mode (ingress
    replicas get their own port, 30000 and up)."""
    env = {
        "RAY_SERVE_DEFAULT_HTTP_HOST": LOOPBACK,
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",  # default 30 s per stop
        CALLBACK_ENV: CALLBACK,  # one X-Request-Id per response, the ingress's
    }
    if throughput_optimized:
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    return env


def ray_env(throughput_optimized: bool = True) -> dict[str, str]:
    """Environment for the process that starts Ray for Serve: the core's
    (:func:`flywheel.ray_runtime.ray_env`: loopback only, no usage stats) and :func:`serve_env`."""
    return {**ray_runtime.ray_env(), **serve_env(throughput_optimized)}


def load_config(path: str | Path = CONFIG_PATH) -> dict[str, Any]:
    """A Serve config file as a dict."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def start_ray(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), or start a local Ray bound to 127.0.0.1 with the
    Serve environment (:func:`flywheel.ray_runtime.start_ray` with :func:`serve_env` as extra env)."""
    throughput_optimized = os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1") == "1"
    ray_runtime.start_ray(address, num_cpus, dashboard, extra_env=serve_env(throughput_optimized))


def _client() -> Any:
    from ray.serve.context import _get_global_client

    return _get_global_client()


def deploy(config: Mapping[str, Any], blocking: bool = True, timeout_s: float = 300.0) -> None:
    """Deploy a full Serve config (``http_options``, ``applications``) declaratively.

    Starts Serve with the config's HTTP options (forced to loopback) if it is not running.
    """
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    cfg = copy.deepcopy(dict(config))
    http = dict(cfg.get("http_options") or {})
    http["host"] = "127.0.0.1"
    cfg["http_options"] = http
    schema = ServeDeploySchema.model_validate(cfg)
    try:
        client = _client()  # Serve already runs: its HTTP options stay as they are
    except Exception:
        serve.start(http_options=http, proxy_location=cfg.get("proxy_location", "HeadOnly"))
        client = _client()
    client.deploy_apps(schema)
    if blocking:
        for app in schema.applications:
            wait_running(app.name, timeout_s)


def wait_running(app: str = APP_NAME, timeout_s: float = 300.0) -> None:
    """Block until ``app`` is RUNNING (raises on DEPLOY_FAILED or timeout)."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app)
        if status is not None:
            if status.status == "RUNNING":
                return
            if status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                raise RuntimeError(f"application {app} is {status.status}: {status.message}")
        time.sleep(0.5)
    raise TimeoutError(f"application {app} not running after {timeout_s:g} s")


def deployed_config() -> dict[str, Any]:
    """The config the cluster runs now (as ``serve deploy`` would send it)."""
    details = _client().get_serve_details()
    apps = []
    for app in details["applications"].values():
        cfg = app.get("deployed_app_config")
        if cfg is None:
            raise RuntimeError(f"application {app['name']} was not deployed from a config")
        apps.append(cfg)
    out: dict[str, Any] = {"applications": apps}
    if details.get("http_options"):
        out["http_options"] = {k: v for k, v in details["http_options"].items() if k in ("host", "port")}
    if details.get("proxy_location"):
        out["proxy_location"] = details["proxy_location"]
    return out


def with_weights(
    config: Mapping[str, Any], weights: Mapping[str, float], app: str = APP_NAME
) -> dict[str, Any]:
    """A copy of ``config`` whose ingress ``user_config.weights`` is ``weights``."""
    cfg = copy.deepcopy(dict(config))
    for application in cfg["applications"]:
        if application.get("name", "default") != app:
            continue
        deployments = application.setdefault("deployments", [])
        ingress = next((d for d in deployments if d.get("name") == INGRESS), None)
        if ingress is None:
            ingress = {"name": INGRESS}
            deployments.append(ingress)
        user_config = dict(ingress.get("user_config") or {})
        user_config["weights"] = {k: float(v) for k, v in weights.items()}
        ingress["user_config"] = user_config
        return cfg
    raise KeyError(f"no application named {app!r} in the config")


def set_weights(weights: Mapping[str, float], app: str = APP_NAME, blocking: bool = True) -> dict[str, Any]:
    """Change the A/B split of the running ``app`` (replicas are reconfigured, not restarted)."""
    from serving.routing import validate_weights

    new = with_weights(deployed_config(), validate_weights(weights), app)
    deploy(new, blocking=blocking)
    return new


def replicas(app: str = APP_NAME) -> dict[str, list[tuple[str, int | None]]]:
    """``{deployment: [(replica_id, pid), ...]}`` of the running replicas of ``app``."""
    details = _client().get_serve_details()
    out: dict[str, list[tuple[str, int | None]]] = {}
    for name, dep in details["applications"][app]["deployments"].items():
        out[name] = sorted(
            (r["replica_id"], r.get("pid")) for r in dep["replicas"] if r.get("state") == "RUNNING"
        )
    return out


def direct_ports(first: int | None = None, count: int = 8, path: str = "/v1/health") -> list[int]:
    """Ports of ingress replicas reachable directly (throughput-optimised mode), by probing."""
    import httpx

    start = first or int(os.environ.get("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", "30000"))
    found = []
    for port in range(start, start + count):
        try:
            r = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1.0)
        except httpx.HTTPError:
            continue
        if r.status_code in (200, 503) and "arms" in r.text:
            found.append(port)
    return found


def shutdown(stop_ray: bool = True) -> None:
    """Stop Serve (and the local Ray, if this process started it)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        if stop_ray:
            ray.shutdown()
