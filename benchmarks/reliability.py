"""Reliability of the served endpoint on loopback: faults injected under load, and a soak.

Deploys ``serving/serve_config.yaml`` (the arms on their release ONNX models, the shipped topology:
fast-cnn inside the 2 ingress replicas, the other arms in their deployments; or, with
``embed_arms: false``, 2 ``arm-fast-cnn`` replicas) on a local Ray bound to 127.0.0.1, and drives it
open-loop at ``--rate`` req/s with 5 s clips, alternating between the shared HTTP proxy and the
ingress replica's direct port. Every request carries a client id, so the rows it left in the
prediction log can be counted.

Faults (``--mode faults``), each during ``--phase-s`` seconds of load:

* ``replica_kill``: at ``--kill-rate`` req/s, a replica of the deployment that runs fast-cnn (an
  ``Ingress`` replica when fast-cnn is embedded, else ``arm-fast-cnn``) SIGKILLed 5 s in, and twice
  more, each once Serve has replaced the previous one: failed requests, time until each replica is
  replaced, time from a kill to its last failure. An ingress replica's direct port has no load
  balancer in front of it (a client on it fails while it is down), so that phase drives the proxy;
* ``sqlite_lock``: the SQLite prediction database held under ``BEGIN EXCLUSIVE`` for 20 s;
* ``postgres_stop``: the app redeployed on a throwaway PostgreSQL (Debian's binaries, loopback),
  stopped (``pg_ctl -m immediate``) for 20 s, then started again;
* ``mlflow_stop``: the fast-cnn arm follows the MLflow champion (the release model through the real
  gate, on a throwaway MLflow server); the server is SIGKILLed for 20 s: failed requests, rows lost,
  the model versions the arm answered with;

with, for each, the requests answered, failed (5xx or no answer) and rows lost (answered requests
without a row once the log is flushed).

Soak (``--mode soak``, ``--minutes``, default 10): RSS of every serving process (ingress, arm
replicas, HTTP proxy, Serve controller) every 10 s, P50/P99 per 10 s window and their trend, 5xx.

    python benchmarks/reliability.py                       # faults, then a 10-minute soak
    python benchmarks/reliability.py --mode faults
    python benchmarks/reliability.py --mode soak --minutes 2

Prints markdown and writes ``reports/benchmarks/reliability.json``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import typer  # noqa: E402

from benchmarks.common import machine  # noqa: E402
from benchmarks.load import make_clip  # noqa: E402
from flywheel.processes import free_port  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PORT, DIRECT_MIN = 8765, 31500
SHED = "shed: 503 + Retry-After"
TARGETS = {"max_failed_share_replica_kill": 0.01, "max_recovery_s": 30.0, "max_rss_growth_pct": 5.0}


# -- load ---------------------------------------------------------------------------------------
class Load:
    """Open-loop requests at ``rate`` req/s over ``urls`` (alternating) in a thread pool."""

    def __init__(self, urls: list[str], clip: bytes, rate: float, prefix: str, workers: int = 24):
        self.urls, self.clip, self.rate, self.prefix = urls, clip, rate, prefix
        self.results: list[tuple[float, float, int, str]] = []  # (t, latency ms, status, error)
        self.served: list[tuple[float, str, str]] = []  # (t, X-Arm, X-Model-Version) of each 200
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(workers)
        self._local = threading.local()
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, i: int) -> None:
        import httpx

        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=60)
        url = self.urls[i % len(self.urls)]
        t = time.monotonic()
        try:
            r = client.post(
                f"{url}/v1/diarize", content=self.clip, headers={"X-Client-Id": f"{self.prefix}{i}"}
            )
            status, error = r.status_code, "" if r.status_code < 500 else r.text[:200]
            if status == 503 and "retry-after" in r.headers:
                error = SHED  # the overload policy answering (an arm's queue is full), not a failure
            if status == 200:
                arm, version = r.headers.get("x-arm", ""), r.headers.get("x-model-version", "")
                self.served.append((t - self.t0, arm, version))
        except Exception as err:  # no answer at all
            status, error = 0, f"{type(err).__name__}: {err}"[:200]
        self.results.append((t - self.t0, (time.monotonic() - t) * 1000, status, error))

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            due = self.t0 + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._pool.submit(self._one, i)
            i += 1

    def __enter__(self) -> Load:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def summary(self) -> dict[str, Any]:
        """Counts and latency percentiles of what was sent."""
        ok = [lat for _, lat, s, _ in self.results if s == 200]
        failed = [r for r in self.results if (r[2] == 0 or r[2] >= 500) and r[3] != SHED]
        return {
            "sent": len(self.results),
            "answered": sum(1 for r in self.results if r[2] != 0),
            "ok": len(ok),
            "failed": len(failed),
            "shed": sum(1 for r in self.results if r[3] == SHED),
            "failed_share": round(len(failed) / max(1, len(self.results)), 4),
            "p50_ms": round(float(np.percentile(ok, 50)), 1) if ok else None,
            "p99_ms": round(float(np.percentile(ok, 99)), 1) if ok else None,
            "failures": sorted({e for *_, e in failed})[:5],
            "failure_times_s": [round(r[0], 2) for r in failed],
        }


# -- deployment and database --------------------------------------------------------------------
def config(env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """The shipped Serve config on a fixed loopback port, arms pinned to the release models."""
    from serving import control

    cfg = copy.deepcopy(control.load_config())
    cfg["http_options"]["port"] = PORT
    app = cfg["applications"][0]
    for name, opts in app["args"]["arms"].items():
        opts["model_path"] = str(REPO / "models" / "release" / f"{name}.onnx")
        opts["poll_s"] = 0
    fast = app["args"]["arms"]["fast-cnn"]["deployment"]
    fast.pop("autoscaling_config", None)
    fast["num_replicas"] = 2  # fixed, so a killed replica must come back
    if fast_cnn_deployment(cfg) == "Ingress":
        app["deployments"][0]["num_replicas"] = 2
    if env_vars:
        app["runtime_env"] = {"env_vars": env_vars}
    return cfg


def fast_cnn_deployment(cfg: dict[str, Any]) -> str:
    """The Serve deployment whose replicas run fast-cnn in ``cfg``: the ingress when it is embedded."""
    from serving.app import AppArgs

    args = cfg["applications"][0]["args"]
    embedded = AppArgs(embed_arms=args.get("embed_arms", False), arms=args["arms"]).embedded()
    return "Ingress" if "fast-cnn" in embedded else "arm-fast-cnn"


def rows(db_url: str, prefix: str) -> int:
    """Rows of the prediction log whose client id starts with ``prefix``."""
    from sqlalchemy import func, select

    from flywheel.db import Prediction, make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            stmt = select(func.count()).select_from(Prediction).where(Prediction.client_id.like(f"{prefix}%"))
            return int(conn.execute(stmt).scalar_one())
    finally:
        engine.dispose()


def rows_lost(db_url: str, prefix: str, answered: int, wait_s: float = 90.0) -> int:
    """Answered requests without a row, after waiting for the spool to be replayed."""
    deadline = time.monotonic() + wait_s
    found = 0
    while time.monotonic() < deadline:
        try:
            found = rows(db_url, prefix)
        except Exception:
            found = 0
        if found >= answered:
            break
        time.sleep(1)
    return answered - found


class Postgres:
    """A throwaway PostgreSQL on 127.0.0.1 (as in tests/serving/test_prediction_log.py)."""

    def __init__(self) -> None:
        found = shutil.which("pg_ctl")
        bins = [Path(os.path.realpath(found)).parent] if found else []
        bins += sorted(p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("PostgreSQL server binaries not installed")
        self.bin = bins[-1]
        self.root = Path(tempfile.mkdtemp(prefix="flywheel-pg-"))
        self.root.chmod(0o755)
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def init(self) -> None:
        """initdb and start."""
        self.sock.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        """Start the server."""
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock}"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-l", str(self.root / "log"), "start")

    def stop(self) -> None:
        """Immediate stop (a crash, from the clients' view)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        """Stop and delete."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# -- faults -------------------------------------------------------------------------------------
def _urls() -> list[str]:
    from serving import control

    direct = control.direct_ports(DIRECT_MIN, count=20)
    return [f"http://127.0.0.1:{PORT}"] + [f"http://127.0.0.1:{p}" for p in direct[:1]]


def replica_kill(
    clip: bytes, rate: float, phase_s: float, db_url: str, kills: int = 3, target: str = "arm-fast-cnn"
) -> dict[str, Any]:
    """SIGKILL a replica of deployment ``target`` ``kills`` times under load (the first 5 s in, each
    next one once Serve has replaced the previous victim and 3 s have passed); time until each is
    replaced. An ``Ingress`` target is driven through the proxy only (its direct ports have no
    load balancer)."""
    from serving import control

    replaced: list[float | None] = []
    kill_times: list[float] = []
    urls = _urls()[:1] if target == "Ingress" else _urls()
    with Load(urls, clip, rate, "rk-") as load:
        time.sleep(5)
        for _ in range(kills):
            before = control.replicas()[target]
            victim = before[0][1]
            os.kill(int(victim), signal.SIGKILL)
            killed = time.monotonic()
            kill_times.append(killed - load.t0)
            replaced_s = None
            while replaced_s is None and time.monotonic() - killed < 120:
                now = control.replicas().get(target, [])
                if len(now) == len(before) and all(pid != victim for _, pid in now):
                    replaced_s = round(time.monotonic() - killed, 1)
                time.sleep(0.5)
            replaced.append(replaced_s)
            if replaced_s is None:
                break
            time.sleep(3)
        time.sleep(max(0.0, phase_s - (time.monotonic() - load.t0)))
    out = load.summary()
    failures = out.pop("failure_times_s")
    after = [min(t - k for k in kill_times if t >= k - 1) for t in failures if t >= kill_times[0] - 1]
    known = [r for r in replaced if r is not None]
    out.update(
        kills=len(kill_times),
        replaced_each_s=replaced,
        replaced_s=max(known) if len(known) == len(replaced) else None,
        last_failure_after_kill_s=round(max(after), 2) if after else 0.0,
    )
    out["rows_lost"] = rows_lost(db_url, "rk-", out["answered"])
    return out


def database_fault(
    clip: bytes, rate: float, phase_s: float, db_url: str, prefix: str, down: Any, up: Any
) -> dict[str, Any]:
    """Load for ``phase_s``; ``down()`` at 5 s, ``up()`` 20 s later; rows lost once replayed."""
    with Load(_urls(), clip, rate, prefix) as load:
        time.sleep(5)
        down()
        time.sleep(20)
        up()
        time.sleep(max(0.0, phase_s - 25))
    out = load.summary()
    out.pop("failure_times_s")
    out["rows_lost"] = rows_lost(db_url, prefix, out["answered"])
    return out


def mlflow_outage(clip: bytes, rate: float, phase_s: float, runtime: Path) -> dict[str, Any]:
    """The fast-cnn arm follows the MLflow champion (the release model, registered and promoted by the
    real gate on a throwaway MLflow server); the server is SIGKILLed 5 s into the load and started again
    20 s later. Failed requests, rows lost, and the model versions the arm answered with (one: it kept
    its champion through the outage)."""
    from flywheel.config import get_settings
    from registry.gate_rules import GateRules
    from registry.mlflow_server import ServerConfig, launch, stop_server, wait_healthy
    from registry.models import register
    from registry.promote import promote
    from serving import control

    server = ServerConfig(port=free_port(), root=runtime / "mlflow")
    env = {
        "FLYWHEEL_MLFLOW_TRACKING_URI": server.url,
        "FLYWHEEL_GATE_KEY": secrets.token_hex(16),
        "FLYWHEEL_REPORTS_DIR": str(runtime / "reports"),
        "FLYWHEEL_MODEL_CACHE_DIR": str(runtime / "model-cache"),
    }
    os.environ.update(env)
    get_settings.cache_clear()
    proc = launch(server)
    try:
        if not wait_healthy(server.url, 240, proc):
            return {"skipped": f"mlflow server did not start (log: {server.log_file})"}
        version = register("fast-cnn", REPO / "models" / "release" / "fast-cnn.onnx", {}, "release")
        # This phase tests an outage, not the model: the gate's DER bars are opened so the release model
        # (24 % on the gate set, above the product bar of 20 %) becomes the champion the arm follows.
        rules = dataclasses.replace(GateRules.from_params(), max_der=1.0, beta_max_der=1.0)
        decision = promote("fast-cnn", version, rules=rules)
        if decision.action != "champion":
            return {"skipped": f"the gate did not make the release model champion: {decision.reason}"}
        cfg = config(env)
        arm = cfg["applications"][0]["args"]["arms"]["fast-cnn"]
        arm.pop("model_path", None)
        arm.update(model_name="fast-cnn", tracking_uri=server.url, poll_s=1)
        control.deploy(cfg, timeout_s=300)
        time.sleep(3)
        with Load(_urls(), clip, rate, "ml-") as load:
            time.sleep(5)
            os.killpg(proc.pid, signal.SIGKILL)  # a crash: no shutdown, the port just stops answering
            proc.wait()
            time.sleep(20)
            proc = launch(server)
            back = wait_healthy(server.url, 120, proc)
            time.sleep(max(0.0, phase_s - (time.monotonic() - load.t0)))
        out = load.summary()
        out.pop("failure_times_s")
        versions = sorted({v for _, name, v in load.served if name == "fast-cnn"})
        out.update(champion_version=version, fast_cnn_versions=versions, mlflow_back=back)
        out["rows_lost"] = rows_lost(f"sqlite:///{runtime / 'predictions.db'}", "ml-", out["answered"])
        return out
    finally:
        stop_server(server)
        control.deploy(config(), timeout_s=300)


def postgres_outage(clip: bytes, rate: float, phase_s: float) -> dict[str, Any]:
    """The app redeployed on a throwaway PostgreSQL, stopped for 20 s under load, then started."""
    from serving import control

    try:
        pg = Postgres()
    except RuntimeError as err:
        return {"skipped": str(err)}
    try:
        pg.init()
        control.deploy(config({"FLYWHEEL_DATABASE_URL": pg.url}), timeout_s=300)
        time.sleep(3)
        return database_fault(clip, rate, phase_s, pg.url, "pg-", pg.stop, pg.start)
    finally:
        control.deploy(config(), timeout_s=300)
        pg.remove()


FAULTS = ("replica_kill", "sqlite_lock", "mlflow_stop", "postgres_stop")


def run_faults(
    clip: bytes, rate: float, phase_s: float, runtime: Path, kill_rate: float, only: list[str] | None = None
) -> dict[str, Any]:
    """The fault phases of ``only`` (default: all four; PostgreSQL skipped when its binaries are missing)."""
    from serving import control

    unknown = set(only or ()) - set(FAULTS)
    if unknown:
        raise typer.BadParameter(f"unknown fault(s) {sorted(unknown)}; choose from {list(FAULTS)}")
    db = runtime / "predictions.db"
    lock: dict[str, sqlite3.Connection] = {}

    def lock_db() -> None:
        lock["c"] = sqlite3.connect(db, timeout=30)
        lock["c"].execute("BEGIN EXCLUSIVE")

    def unlock_db() -> None:
        lock["c"].rollback()
        lock["c"].close()

    url = f"sqlite:///{db}"
    deployed = config()
    target = fast_cnn_deployment(deployed)
    phases = {
        "replica_kill": lambda: replica_kill(clip, kill_rate, phase_s, url, target=target),
        "sqlite_lock": lambda: database_fault(clip, rate, phase_s, url, "sq-", lock_db, unlock_db),
        "mlflow_stop": lambda: mlflow_outage(clip, rate, phase_s, runtime),
        "postgres_stop": lambda: postgres_outage(clip, rate, phase_s),
    }
    control.deploy(deployed, timeout_s=300)
    results: dict[str, Any] = {}
    for name in FAULTS:
        if only and name not in only:
            continue
        results[name] = phases[name]()
        print(name, results[name], flush=True)
    return results


# -- soak ---------------------------------------------------------------------------------------
def serving_pids() -> dict[str, int]:
    """``{name: pid}`` of the replicas, the HTTP proxy and the Serve controller."""
    import ray

    from serving import control

    out = {
        f"{dep}#{i}": pid
        for dep, reps in control.replicas().items()
        for i, (_, pid) in enumerate(reps)
        if pid
    }
    details = control._client().get_serve_details()
    actors = {"controller": "SERVE_CONTROLLER_ACTOR"}
    actors.update({f"proxy#{i}": p["actor_name"] for i, p in enumerate(details.get("proxies", {}).values())})
    for name, actor in actors.items():
        try:
            handle = ray.get_actor(actor, namespace="serve")
            out[name] = ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=10)
        except Exception:
            continue
    return out


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MB (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_soak(clip: bytes, rate: float, minutes: float, runtime: Path) -> dict[str, Any]:
    """``minutes`` of steady load; RSS every 10 s, latency per 10 s window."""
    from serving import control

    control.deploy(config(), timeout_s=300)
    pids = serving_pids()
    samples: list[dict[str, Any]] = []
    duration = minutes * 60
    with Load(_urls(), clip, rate, "soak-") as load:
        while time.monotonic() - load.t0 < duration:
            time.sleep(10)
            samples.append(
                {"t_s": round(time.monotonic() - load.t0), **{k: rss_mb(p) for k, p in pids.items()}}
            )
    out = load.summary()
    times = out.pop("failure_times_s")
    warm = min(60.0, duration / 5)
    base = next((s for s in samples if s["t_s"] >= warm), samples[0])
    growth = {}
    for name in pids:
        if base.get(name) and samples[-1].get(name):
            growth[name] = round(100 * (samples[-1][name] - base[name]) / base[name], 2)
    windows = []
    for start in range(0, int(duration), 10):
        lat = [lat for t, lat, s, _ in load.results if s == 200 and start <= t < start + 10]
        if lat:
            windows.append((start, float(np.percentile(lat, 50)), float(np.percentile(lat, 99))))
    w = np.array(windows)
    slope = float(np.polyfit(w[:, 0] / 60, w[:, 1], 1)[0]) if len(w) > 2 else 0.0
    n5xx = sum(1 for _, _, s, _ in load.results if s >= 500)
    half = len(w) // 2
    out.update(
        minutes=minutes,
        rate=rate,
        status_5xx=n5xx,
        no_answer=len([t for t in times]) - n5xx,
        rss_mb_after_warmup=base,
        rss_mb_end=samples[-1],
        rss_growth_pct=growth,
        max_rss_growth_pct=max(growth.values()) if growth else None,
        p50_trend_ms_per_min=round(slope, 3),
        p50_first_half_ms=round(float(np.median(w[:half, 1])), 1) if half else None,
        p50_second_half_ms=round(float(np.median(w[half:, 1])), 1) if half else None,
        rss_samples=samples,
        latency_windows=[{"t_s": t, "p50_ms": round(a, 1), "p99_ms": round(b, 1)} for t, a, b in windows],
        rows_lost=rows_lost(f"sqlite:///{runtime / 'predictions.db'}", "soak-", out["answered"]),
    )
    return out


# -- main ---------------------------------------------------------------------------------------
def table(report: dict[str, Any]) -> str:
    """Markdown summary."""
    lines = [
        "| check | sent | failed | failed % | rows lost | recovery | P50 / P99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in report.get("faults", {}).items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | | | |")
            continue
        rec = ""
        if "replaced_s" in r:
            each = ", ".join(f"{x} s" for x in r["replaced_each_s"])
            rec = f"{r['kills']} kills, replaced in {each}; last failure +{r['last_failure_after_kill_s']} s"
        elif "fast_cnn_versions" in r:
            seen = ", v".join(r["fast_cnn_versions"])
            rec = f"champion v{r['champion_version']}; fast-cnn answered with v{seen}"
        lost = r.get("rows_lost", "-")
        shed = f" (+{r['shed']} shed)" if r.get("shed") else ""
        lines.append(
            f"| {name} | {r['sent']} | {r['failed']}{shed} | {100 * r['failed_share']:.2f} | {lost} "
            f"| {rec} | {r['p50_ms']} / {r['p99_ms']} |"
        )
    s = report.get("soak")
    if s:
        trend = (
            f"RSS growth max {s['max_rss_growth_pct']} %, P50 trend {s['p50_trend_ms_per_min']} ms/min "
            f"({s['p50_first_half_ms']} -> {s['p50_second_half_ms']})"
        )
        lines.append(
            f"| soak {s['minutes']:g} min @ {s['rate']:g} req/s | {s['sent']} "
            f"| {s['failed']} (5xx {s['status_5xx']}) | {100 * s['failed_share']:.2f} | {s['rows_lost']} "
            f"| {trend} | {s['p50_ms']} / {s['p99_ms']} |"
        )
    return "\n".join(lines)


def main(
    mode: str = typer.Option("all", help="faults | soak | all"),
    minutes: float = typer.Option(10.0, help="soak duration"),
    rate: float = typer.Option(8.0, help="requests per second (open loop)"),
    phase_s: float = typer.Option(40.0, help="seconds of load per fault phase"),
    kill_rate: float = typer.Option(20.0, help="requests per second during the replica kills"),
    fault: list[str] = typer.Option(None, help=f"only these fault phases (repeatable): {', '.join(FAULTS)}"),
    clip_s: float = typer.Option(5.0, help="seconds of audio per request"),
    out: Path = typer.Option(REPO / "reports" / "benchmarks" / "reliability.json"),
) -> None:
    """Run the fault phases and/or the soak; print markdown, write JSON."""
    from serving import control

    runtime = Path(tempfile.mkdtemp(prefix="flywheel-reliability-"))
    os.environ.update(
        FLYWHEEL_RUNTIME_DIR=str(runtime),
        RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT=str(DIRECT_MIN),
        RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT=str(DIRECT_MIN + 20),
    )
    clip = make_clip(clip_s)
    report: dict[str, Any] = {
        "machine": machine(),
        "args": {
            "mode": mode,
            "minutes": minutes,
            "rate": rate,
            "kill_rate": kill_rate,
            "faults": fault or list(FAULTS),
            "phase_s": phase_s,
            "clip_s": clip_s,
        },
        "runtime": str(runtime),
        "targets": TARGETS,
    }
    t0 = time.monotonic()
    control.start_ray(num_cpus=2)
    try:
        if mode in ("faults", "all"):
            report["faults"] = run_faults(clip, rate, phase_s, runtime, kill_rate, fault or None)
        if mode in ("soak", "all"):
            report["soak"] = run_soak(clip, rate, minutes, runtime)
    finally:
        control.shutdown(stop_ray=True)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(table(report))
    print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
