"""The Ray job form of the retrain loop (docs/flywheel.md, "Running it on a schedule"), for real: a Ray
head with its job server on loopback, ``ray job submit`` of ``flywheel retrain`` in this checkout,
the job's status and logs read back. The entrypoint runs in the checkout on the head node (no
``working_dir``), on a workspace without reviewed data, so the retrain does nothing and says so.

The head and the CLI share a token of their own (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH``), so
the test neither depends on nor writes ``~/.ray/auth_token``. The serving tests' live Serve app is
stopped before this runs (tests/serving/conftest.py): beside it the head's raylet missed Ray's fixed
30 s to register (CI). On a loaded 2-core machine the head's dashboard has not answered within minutes
(CI, twice in 600 tests), so the head is started with its output kept, its dashboard polled over HTTP
(cheaper than a ``ray`` CLI process per try), and started afresh on new ports once if it never answers
or dies before it takes the job."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from service_fixtures import free_port

from flywheel.config import REPO_ROOT

pytestmark = pytest.mark.slow
RAY = Path(sys.executable).parent / "ray"


def _ray_env(token: Path) -> dict[str, str]:
    """The environment of the head and of every ``ray`` CLI call: token auth with this test's token."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token)}  # fmt: skip


class Head:
    """One ``ray start --head --block`` on loopback with its dashboard (job server) on a free port."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.env = env
        self.temp = Path(tempfile.mkdtemp(prefix="rayjob-", dir="/tmp"))  # short: socket paths are limited
        self.address = f"http://127.0.0.1:{free_port()}"
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [
                    str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                    "--port", str(free_port()), "--dashboard-host", "127.0.0.1",
                    "--dashboard-port", self.address.rsplit(":", 1)[1],
                    "--dashboard-agent-listen-port", str(free_port()), "--include-dashboard", "true",
                    "--num-cpus", "1", "--temp-dir", str(self.temp),
                ],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait_until_answering(self, timeout: float) -> bool:
        """True once the dashboard answers ``/api/version``; False if the head exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.address}/api/version", timeout=5):
                    return True
            except urllib.error.HTTPError:  # it answered (401 without the token header is an answer)
                return True
            except OSError:
                pass
            time.sleep(2)
        return False

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """``ray job <command> --address <this head> <args...>``, output captured."""
        return subprocess.run(
            [str(RAY), *args[:2], "--address", self.address, *args[2:]],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def diagnostics(self) -> str:
        """The head's own output, the ends of its dashboard, raylet and GCS logs, and the busiest
        processes on the machine, for a failure message."""
        tails = []
        for name in ("dashboard.log", "raylet.out", "raylet.err", "gcs_server.out"):
            found = next(iter(self.temp.glob(f"session_*/logs/{name}")), None)
            tails.append(f"--- {name}\n" + (found.read_text(errors="replace")[-1200:] if found else "(none)"))
        top = subprocess.run(["ps", "-eo", "pcpu,rss,etimes,args", "--sort=-pcpu"], capture_output=True,
                             text=True).stdout.splitlines()[:10]  # fmt: skip
        return "\n".join([f"head exit={self.proc.poll()}", self.log.read_text(errors="replace")[-1500:],
                          *tails, "--- busiest processes", *(line[:200] for line in top)])  # fmt: skip

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # `ray start --block` stops its cluster when signalled
            self.proc.wait(60)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", str(self.temp)], check=False)  # stragglers of this head only


def test_retrain_runs_as_a_ray_job_on_a_loopback_head(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"  # no reviewed data: the retrain has nothing to do
    workspace.mkdir()
    (workspace / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    token = tmp_path / "ray-token"
    token.write_text(secrets.token_hex(32))
    env = _ray_env(token)
    entry = f"cd {REPO_ROOT} && {sys.executable} -m cli.main retrain --root {workspace} --no-commit --no-push"
    heads: list[Head] = []
    try:
        for attempt in (1, 2):  # a head that never answers, or dies before taking the job, gets one successor
            head = Head(tmp_path / f"head-{attempt}.log", env)
            heads.append(head)
            sub = None
            if head.wait_until_answering(240):
                deadline = time.monotonic() + 180
                while head.proc.poll() is None:  # the job server takes jobs once the dashboard agent is up
                    sub = head.ray("job", "submit", "--submission-id", "retrain-t", "--no-wait", "--",
                                   "bash", "-c", entry)  # fmt: skip
                    if sub.returncode == 0 or time.monotonic() > deadline:
                        break
                    time.sleep(3)
            if sub is not None and sub.returncode == 0:
                break
            print(f"Ray head {attempt} did not take the job:\n{head.diagnostics()}")
            head.stop()
        assert sub is not None and sub.returncode == 0, (sub and sub.stderr[-1500:], head.diagnostics())
        deadline = time.monotonic() + 180
        while True:
            status = head.ray("job", "status", "retrain-t").stdout.lower()
            if any(s in status for s in ("succeeded", "failed", "stopped")) or time.monotonic() > deadline:
                break
            time.sleep(2)
        logs = head.ray("job", "logs", "retrain-t").stdout
        assert "succeeded" in status, (status, logs[-2000:])
        assert "no reviewed data" in logs or "nothing to do" in logs, logs[-2000:]
    finally:
        for head in heads:
            head.stop()
