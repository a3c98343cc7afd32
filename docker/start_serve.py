"""Start Serve on the running Ray cluster with a Serve config's HTTP options and another bind host.

``serving.control.deploy`` (what ``flywheel serve up`` / ``python -m serving.runner`` use) starts Serve
bound to 127.0.0.1 when Serve is not running yet, and leaves a running Serve's options alone. In a
container the proxy has to listen on the container's interface for a published port to reach it, so
docker/ray-head.sh starts Serve here first, with the config's port, timeout and proxy location:

    python docker/start_serve.py --config serving/serve_config.yaml --host 0.0.0.0
"""

from __future__ import annotations

import argparse
import sys

from serving import control


def main(argv: list[str] | None = None) -> int:
    """Start Serve (detached) on the cluster at RAY_ADDRESS / ``auto``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(control.CONFIG_PATH))
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--address", default="auto")
    args = parser.parse_args(argv)

    import ray
    from ray import serve

    config = control.load_config(args.config)
    http = dict(config.get("http_options") or {}, host=args.host)
    ray.init(address=args.address, logging_level="WARNING", log_to_driver=False)
    serve.start(http_options=http, proxy_location=config.get("proxy_location", "HeadOnly"))
    print(f"serve started: {http}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
