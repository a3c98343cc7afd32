"""Foreground process behind ``make up`` / ``flywheel serve up``: Ray + the Serve app, until SIGTERM.

Starts a loopback-only Ray (or joins ``RAY_ADDRESS``), deploys the Serve config declaratively (so
``serve deploy`` and ``flywheel ab set`` can change it later), prints the URLs, and on SIGTERM removes
what it started: the whole local Ray, or only the application on a cluster it joined.

    python -m serving.runner --config serving/serve_config.yaml
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from serving import control


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=control.CONFIG_PATH)
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--no-dashboard", action="store_true", help="skip the dashboard (no `serve deploy`)")
    args = parser.parse_args(argv)

    joined = bool(args.address)
    control.start_ray(args.address, num_cpus=args.num_cpus, dashboard=not args.no_dashboard)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs its own handlers
        signal.signal(sig, lambda *_: stop.set())
    config = control.load_config(args.config)
    try:
        control.deploy(config)
    except Exception as err:
        print(f"deploy failed: {err}", file=sys.stderr, flush=True)
        control.shutdown(stop_ray=not joined)
        return 1
    port = (config.get("http_options") or {}).get("port", 8000)
    print(f"serving: http://127.0.0.1:{port}/v1/diarize  (docs: http://127.0.0.1:{port}/docs)", flush=True)
    direct = control.direct_ports()
    if direct:
        urls = ", ".join(f"http://127.0.0.1:{p}" for p in direct)
        print(f"direct ingress (no proxy hop): {urls}", flush=True)
    print("ready", flush=True)
    stop.wait()
    print("stopping", flush=True)
    if joined:
        from ray import serve

        for app in config.get("applications", []):
            serve.delete(app.get("name", "default"))
    else:
        control.shutdown(stop_ray=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
