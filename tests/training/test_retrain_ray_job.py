"""The Ray job form of the retrain loop (docs/flywheel.md, "Running it on a schedule"), for real: a Ray
head with its job server on loopback, ``ray job submit`` of ``flywheel retrain`` in this checkout,
the job's status and logs read back. The entrypoint runs in the checkout on the head node (no
``working_dir``), on a workspace without reviewed data, so the retrain does nothing and says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from service_fixtures import free_port

from flywheel.config import REPO_ROOT

pytestmark = pytest.mark.slow
RAY = Path(sys.executable).parent / "ray"


def _ray(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAY), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_retrain_runs_as_a_ray_job_on_a_loopback_head(tmp_path: Path) -> None:
    temp = Path(tempfile.mkdtemp(prefix="rayjob-", dir="/tmp"))  # short: Ray's socket paths are limited
    dashboard = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    head = subprocess.Popen(
        [
            str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--port", str(free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
            "--dashboard-agent-listen-port", str(free_port()), "--include-dashboard", "true",
            "--num-cpus", "1", "--temp-dir", str(temp),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    job_env = {**env, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    workspace = tmp_path / "workspace"  # no reviewed data: the retrain has nothing to do
    workspace.mkdir()
    (workspace / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    try:
        entry = (
            f"cd {REPO_ROOT} && {sys.executable} -m cli.main retrain --root {workspace} --no-commit --no-push"
        )
        deadline = time.monotonic() + 180
        while True:  # the job server answers once the head's dashboard agent is up
            sub = _ray(job_env, "job", "submit", "--address", address, "--submission-id", "retrain-t",
                       "--no-wait", "--", "bash", "-c", entry)  # fmt: skip
            if sub.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert sub.returncode == 0, sub.stderr[-2000:]
        while True:
            status = _ray(job_env, "job", "status", "--address", address, "retrain-t").stdout.lower()
            if any(s in status for s in ("succeeded", "failed", "stopped")) or time.monotonic() > deadline:
                break
            time.sleep(2)
        logs = _ray(job_env, "job", "logs", "--address", address, "retrain-t").stdout
        assert "succeeded" in status, (status, logs[-2000:])
        assert "no reviewed data" in logs or "nothing to do" in logs, logs[-2000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops its cluster when signalled
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", str(temp)], check=False)  # stragglers of this head only
