"""Load test of the serving path on loopback: throughput, latency per arm, Serve hop overhead, logging cost.

For each variant (topology x logging) it deploys the Serve app on a local Ray (127.0.0.1 only), then
with an async httpx client sending 10-second clips:

* closed loop at several concurrency levels (each bounded by ``--duration`` seconds and
  ``--max-requests``): req/s, P50/P95/P99 latency and errors per arm;
* open loop at a fixed rate (``--rate``, default 30 req/s): latency percentiles including queueing;
* through the Serve HTTP proxy (port 8000) and directly to the ingress replica's own port
  (throughput-optimised mode), i.e. with and without the proxy hop.

It also times the model alone in this process (decode + diarize, one thread), so the overhead of the
Serve hops is ``P50(served, concurrency 1) - P50(model alone)``, and compares P50 with the prediction
log on and off. The client runs on the same two cores as the server, so its CPU is part of the bill.

Usage::

    python benchmarks/load.py --model models/release/fast-cnn.onnx            # full run (minutes)
    python benchmarks/load.py --model M --quick                                # short smoke run
    python benchmarks/load.py --url http://127.0.0.1:8000                      # an already running app

Prints markdown tables and writes ``reports/benchmarks/load.json``.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import typer  # noqa: E402

from benchmarks.common import machine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"min_rps_fast_cnn": 150.0, "max_p99_ms_at_rate": 50.0, "max_logging_p50_delta_ms": 1.0}  # issue 23


# -- test audio -----------------------------------------------------------------------------------
def make_clip(seconds: float = 10.0, source: Path | None = None, seed: int = 0) -> bytes:
    """A 10-s 16 kHz WAV: from ``source`` or a simulated test conversation, else two synthetic voices."""
    import soundfile as sf

    from flywheel.audio import load_audio

    found = [source] if source else sorted((REPO / "data" / "conversations").glob("*/test/*.wav"))
    if found:
        x = load_audio(found[0])[: int(seconds * 16000)]
    else:  # two alternating harmonic "speakers" with pauses
        rng = np.random.default_rng(seed)
        t = np.arange(int(seconds * 16000)) / 16000
        x = np.zeros_like(t)
        for i, start in enumerate(np.arange(0, seconds, 1.25)):
            f0 = 120 if i % 2 else 210
            m = (t >= start) & (t < start + 1.0)
            x[m] = sum(np.sin(2 * np.pi * f0 * k * t[m]) / k for k in range(1, 6)) * 0.1
        x += rng.standard_normal(len(x)) * 0.003
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# -- statistics -----------------------------------------------------------------------------------
def summarize(latencies: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    """Percentiles (ms), req/s and errors of one group of requests."""
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {
        "n": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def by_arm(results: list[tuple[str, float, bool]], elapsed: float) -> dict[str, Any]:
    """``{arm: summary, "all": summary}`` from ``(arm, seconds, ok)`` triples."""
    groups: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for arm, seconds, ok in results:
        groups[arm].append((seconds, ok))
        groups["all"].append((seconds, ok))
    return {
        arm: summarize([s for s, ok in rows if ok], sum(1 for _, ok in rows if not ok), elapsed)
        for arm, rows in sorted(groups.items())
    }


# -- load generation ------------------------------------------------------------------------------
async def _one(client: Any, url: str, clip: bytes, headers: dict[str, str]) -> tuple[str, float, bool]:
    t0 = time.perf_counter()
    try:
        r = await client.post(url, content=clip, headers=headers)
        ok = r.status_code == 200
        arm = r.json().get("arm", "?") if ok else f"error-{r.status_code}"
        if r.status_code == 503 and "shed" in r.text:  # the arm was at capacity (docs/serving.md)
            arm = f"shed-{r.json().get('arm', '?')}"
    except Exception as err:  # counted, never fatal
        ok, arm = False, f"error-{type(err).__name__}"
    return arm, time.perf_counter() - t0, ok


async def closed_loop(
    bases: list[str],
    clip: bytes,
    concurrency: int,
    duration: float,
    max_requests: int,
    headers: dict[str, str],
) -> dict[str, Any]:
    """``concurrency`` clients sending back to back until the time or request budget is spent
    (client ``i`` talks to ``bases[i % len(bases)]``: a client-side load balancer)."""
    import httpx

    urls = [f"{b}/v1/diarize" for b in bases]
    results: list[tuple[str, float, bool]] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for i in range(max(4, len(urls))):  # warm the connections and the replicas
            await _one(client, urls[i % len(urls)], clip, headers)
        deadline = time.perf_counter() + duration
        t0 = time.perf_counter()

        async def worker(i: int) -> None:
            h = {**headers, "X-Client-Id": f"bench-{i}-{random.random()}"}
            while time.perf_counter() < deadline and len(results) < max_requests:
                results.append(await _one(client, urls[i % len(urls)], clip, h))

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"concurrency": concurrency, "seconds": round(elapsed, 2), "arms": by_arm(results, elapsed)}


async def open_loop(
    bases: list[str], clip: bytes, rate: float, duration: float, headers: dict[str, str]
) -> dict[str, Any]:
    """Requests started at a fixed rate (evenly spaced); latency includes queueing."""
    import httpx

    urls = [f"{b}/v1/diarize" for b in bases]
    n = int(rate * duration)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=256)) as client:
        for i in range(max(4, len(urls))):
            await _one(client, urls[i % len(urls)], clip, headers)
        t0 = time.perf_counter()

        async def at(i: int) -> tuple[str, float, bool]:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            return await _one(client, urls[i % len(urls)], clip, {**headers, "X-Client-Id": f"open-{i}"})

        results = await asyncio.gather(*(at(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
    return {"rate": rate, "seconds": round(elapsed, 2), "arms": by_arm(list(results), elapsed)}


# -- the model alone ------------------------------------------------------------------------------
def model_alone(model: Path | None, clip: bytes, runs: int, name: str = "fast-cnn") -> dict[str, Any]:
    """Decode + diarize in this process, one thread: what a request costs without any serving
    (latency percentiles and ``cpu_ms``, the process CPU per request). ``model`` None: the arm's
    champion."""
    from serving.arms import Arm, ArmSpec
    from serving.limits import Limits, decode

    arm = Arm(ArmSpec(name=name, model_path=str(model) if model else None))
    arm.refresh()
    limits = Limits(64 << 20, 1800)
    for _ in range(3):
        arm.diarize(decode(clip, limits))
    times = []
    c0 = time.process_time()
    for _ in range(runs):
        t0 = time.perf_counter()
        arm.diarize(decode(clip, limits))
        times.append(time.perf_counter() - t0)
    cpu_ms = (time.process_time() - c0) / runs * 1000
    return {**summarize(times, 0, sum(times)), "cpu_ms": round(cpu_ms, 2)}


# -- CPU per request, by process ----------------------------------------------------------------
def _role(cmdline: str, pid: int) -> str | None:
    """Which part of the request path a process is (None: not ours)."""
    import re

    if pid == os.getpid():
        return "client"
    if "ProxyActor" in cmdline:
        return "proxy"
    m = re.search(r"ServeReplica:[^:\s]+:([\w-]+)", cmdline)
    if m:
        return "ingress" if m.group(1) == "Ingress" else m.group(1)
    if "ray" in cmdline:
        return "ray-other"  # controller, raylet, GCS, agents
    return None


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """``{pid: (role, user+system CPU seconds)}`` of this process and Ray's."""
    import psutil

    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        try:
            role = _role(" ".join(proc.info["cmdline"] or []), proc.info["pid"])
            t = proc.info["cpu_times"]
        except (psutil.Error, TypeError):
            continue
        if role and t is not None:
            out[proc.info["pid"]] = (role, t.user + t.system)
    return out


def cpu_per_request(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], arms: dict[str, Any]
) -> dict[str, float]:
    """CPU ms per request of each role between two snapshots: an arm replica's over that arm's
    served requests, everything else over all requests."""
    total: dict[str, float] = defaultdict(float)
    for pid, (role, t) in after.items():
        if pid in before:
            total[role] += t - before[pid][1]
    n_all = max(1, arms["all"]["n"] + arms["all"]["errors"])
    out = {}
    for role, seconds in sorted(total.items()):
        n = arms.get(role.removeprefix("arm-"), {}).get("n") if role.startswith("arm-") else None
        out[role] = round(seconds * 1000 / (n or n_all), 2)  # an idle arm: its idle CPU over all requests
    return out


# -- deployments ----------------------------------------------------------------------------------
def variant_config(
    model: Path | None, embed: bool | None, logging: bool, port: int, replicas: int
) -> dict[str, Any]:
    """The Serve config of one variant: serving/serve_config.yaml with the arm pinned to ``model``
    (``model`` None: variant ``ab``, the shipped config as it is: arms, weights, limits, champions;
    there ``embed`` None keeps the shipped ``embed_arms``, False puts every arm in its deployment)."""
    from serving import control

    cfg = copy.deepcopy(control.load_config())
    cfg["http_options"]["port"] = port
    app = cfg["applications"][0]
    if model is None:
        app["args"]["log_predictions"] = logging
        if embed is not None:
            app["args"]["embed_arms"] = embed
        return cfg
    arm = {"model_path": str(model), "poll_s": 0, "deployment": {"num_replicas": replicas}}
    app["args"].update(embed_arms=embed, embedded_workers=1, log_predictions=logging, arms={"fast-cnn": arm})
    ingress = app["deployments"][0]
    ingress["user_config"] = {"weights": {"fast-cnn": 1.0}}
    ingress["num_replicas"] = replicas if embed else 1  # embedded: one model thread per ingress replica
    return cfg


def run_variant(
    base: str, direct: list[str], clip: bytes, args: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """All measurements of one deployed variant (through the proxy, and straight to the ingress
    replicas' own ports when the throughput-optimised mode opened them)."""
    out: dict[str, Any] = {"paths": {}, "direct_ports": direct}
    paths = {"proxy": [base], **({"direct": direct} if direct else {})}
    for name, url in paths.items():
        runs = [
            asyncio.run(closed_loop(url, clip, c, args["duration"], args["max_requests"], headers))
            for c in args["concurrency"]
        ]
        before = cpu_snapshot()
        rate = asyncio.run(open_loop(url, clip, args["rate"], args["duration"], headers))
        rate["cpu_ms_per_request"] = cpu_per_request(before, cpu_snapshot(), rate["arms"])
        out["paths"][name] = {"closed_loop": runs, "open_loop": rate}
    return out


# -- reporting ------------------------------------------------------------------------------------
def table(report: dict[str, Any]) -> str:
    """Markdown tables of a report."""
    lines = [
        "| variant | path | load | arm | req/s | P50 ms | P95 ms | P99 ms | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in report["variants"]:
        for path, m in v["paths"].items():
            for run in m["closed_loop"]:
                for arm, s in run["arms"].items():
                    if arm == "all" and len(run["arms"]) == 2:
                        continue
                    lines.append(
                        f"| {v['name']} | {path} | c={run['concurrency']} | {arm} | {s['rps']} | "
                        f"{s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} | {s['errors']} |"
                    )
            arms = m["open_loop"]["arms"]
            for arm, s in arms.items():
                if arm == "all" and len(arms) == 2:
                    continue
                lines.append(
                    f"| {v['name']} | {path} | {m['open_loop']['rate']:g} req/s | {arm} | {s['rps']} | "
                    f"{s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} | {s['errors']} |"
                )
    a = report.get("model_alone")
    if a:
        lines += [
            "",
            f"Model alone (decode + diarize, 1 thread, in process): P50 {a['p50_ms']} ms, "
            f"P99 {a['p99_ms']} ms, CPU {a.get('cpu_ms')} ms per request.",
        ]
    for arm, m in (report.get("models_alone") or {}).items():
        lines.append(f"{arm} alone: P50 {m['p50_ms']} ms, CPU {m['cpu_ms']} ms per request.")
    lines += [
        "",
        "CPU ms per request at the open-loop rate, by process (an arm's over its own requests):",
        "",
        "| variant | path | proxy | ingress | arms | ray-other | client (load generator) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in report["variants"]:
        for path, m in v["paths"].items():
            c = m["open_loop"].get("cpu_ms_per_request") or {}
            arms = ", ".join(f"{k} {x}" for k, x in c.items() if k.startswith("arm-"))
            lines.append(
                f"| {v['name']} | {path} | {c.get('proxy', '-')} | {c.get('ingress', '-')} | {arms or '-'} | "
                f"{c.get('ray-other', '-')} | {c.get('client', '-')} |"
            )
    for k, v in report.get("derived", {}).items():
        lines.append(f"- {k}: {v}")
    return "\n".join(lines)


def derive(report: dict[str, Any]) -> dict[str, Any]:
    """Hop overheads, logging cost and the targets, from the raw measurements."""
    out: dict[str, Any] = {}
    alone = (report.get("model_alone") or {}).get("p50_ms")
    variants = {v["name"]: v for v in report["variants"]}
    best_rps, p99_at_rate, errors = 0.0, None, 0
    for name, v in variants.items():
        for path, m in v["paths"].items():
            c1 = next((r for r in m["closed_loop"] if r["concurrency"] == 1), None)
            if c1 and alone:
                fast = c1["arms"].get("fast-cnn", c1["arms"]["all"])
                out[f"overhead P50 c=1 {name}/{path} (ms, fast-cnn vs model alone)"] = round(
                    fast["p50_ms"] - alone, 1
                )
            for r in m["closed_loop"]:
                errors += r["arms"]["all"]["errors"]
                best_rps = max(best_rps, r["arms"].get("fast-cnn", r["arms"]["all"])["rps"])
            errors += m["open_loop"]["arms"]["all"]["errors"]
            rate_arms = m["open_loop"]["arms"]
            p = rate_arms.get("fast-cnn", rate_arms["all"])["p99_ms"]
            out[f"P99 fast-cnn at rate {name}/{path} (ms)"] = p
            p99_at_rate = p if p99_at_rate is None else min(p99_at_rate, p)
    for name, v in variants.items():
        if not name.endswith("+log"):
            continue
        off = variants.get(name.replace("+log", "-log"))
        if off is None:
            continue
        for path in v["paths"]:
            on_c1 = v["paths"][path]["closed_loop"][0]["arms"]["all"]["p50_ms"]
            off_c1 = off["paths"][path]["closed_loop"][0]["arms"]["all"]["p50_ms"]
            out[f"logging P50 delta {name.replace('+log', '')}/{path} (ms)"] = round(on_c1 - off_c1, 1)
    out["best req/s fast-cnn"] = best_rps
    out["best fast-cnn P99 at open-loop rate (ms)"] = p99_at_rate
    out["errors"] = errors
    out["targets"] = {
        f">= {TARGETS['min_rps_fast_cnn']:g} req/s": best_rps >= TARGETS["min_rps_fast_cnn"],
        f"P99 <= {TARGETS['max_p99_ms_at_rate']:g} ms at rate": (p99_at_rate or 1e9)
        <= TARGETS["max_p99_ms_at_rate"],
        "zero errors": errors == 0,
    }
    return out


def main(
    model: Path = typer.Option(None, "--model", help="Fast CNN ONNX (default: the fast-cnn champion)."),
    url: str = typer.Option(None, "--url", help="Measure an already running app instead of deploying."),
    variants: str = typer.Option(
        "deployments+log,ab+log,embedded+log",
        help="Comma-separated topology(+log|-log) variants to deploy and measure; topology "
        "deployments or embedded (fast-cnn alone), ab (serving/serve_config.yaml as shipped) or "
        "ab-deployments (the shipped config with every arm in its own deployment).",
    ),
    concurrency: str = typer.Option("1,4,8,16", help="Closed-loop concurrency levels."),
    rate: float = typer.Option(30.0, help="Open-loop request rate (req/s)."),
    duration: float = typer.Option(10.0, help="Seconds per measurement (bounded)."),
    max_requests: int = typer.Option(3000, help="Request cap per measurement."),
    replicas: int = typer.Option(2, help="Model replicas (deployments) or ingress replicas (embedded)."),
    quick: bool = typer.Option(False, help="Short run: c=1,4; 3 s each; rate 10."),
    clip_path: Path = typer.Option(
        None, "--clip", help="Audio to send (first 10 s) (default: a test conversation)."
    ),
    out: Path = typer.Option(REPO / "reports" / "benchmarks" / "load.json", help="JSON report."),
) -> None:
    """Run the load benchmark; see the module docstring."""
    from serving import control
    from serving.champion import resolve

    levels = [1, 4] if quick else [int(c) for c in concurrency.split(",")]
    dur, r = (3.0, 10.0) if quick else (duration, rate)
    args = {"concurrency": levels, "duration": dur, "max_requests": max_requests, "rate": r}
    headers = {"X-API-Key": k} if (k := os.environ.get("FLYWHEEL_API_KEYS", "").split(",")[0]) else {}
    clip = make_clip(source=clip_path)
    report: dict[str, Any] = {"machine": machine(), "args": args, "clip_s": 10.0, "variants": []}
    if url:
        report["variants"].append({"name": "external", **run_variant(url, [], clip, args, headers)})
    else:
        champion = resolve("fast-cnn", model_path=model)
        if champion is None:
            typer.secho("no fast-cnn model: pass --model PATH (e.g. a smoke export)", fg="red", err=True)
            raise typer.Exit(2)
        report["model"] = {"path": str(champion.path), "version": champion.version}
        report["model_alone"] = model_alone(champion.path, clip, runs=30 if quick else 100)
        os.environ.setdefault("FLYWHEEL_RUNTIME_DIR", str(REPO / "runtime" / "bench"))
        control.start_ray(num_cpus=2)
        try:
            for name in variants.split(","):
                topology, logging = name[:-4], name.endswith("+log")
                shipped = topology.startswith("ab")  # ab: as shipped; ab-deployments: every arm hops
                if topology == "ab":  # the model alone, for each other arm with traffic
                    ingress = control.load_config()["applications"][0]["deployments"][0]
                    for arm, w in sorted(ingress["user_config"]["weights"].items()):
                        if w > 0 and arm != "fast-cnn":
                            report.setdefault("models_alone", {})[arm] = model_alone(None, clip, 10, arm)
                pinned = None if shipped else champion.path
                embed = {"ab": None, "ab-deployments": False}.get(topology, topology == "embedded")
                cfg = variant_config(pinned, embed, logging, 8000, replicas)
                control.deploy(cfg, timeout_s=600)
                time.sleep(2)
                direct = [f"http://127.0.0.1:{p}" for p in control.direct_ports()]
                print(f"measuring {name} ...", file=sys.stderr, flush=True)
                measured = run_variant("http://127.0.0.1:8000", direct, clip, args, headers)
                report["variants"].append(
                    {"name": name, "topology": topology, "logging": logging, **measured}
                )
        finally:
            control.shutdown(stop_ray=True)
    report["derived"] = derive(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    typer.run(main)
