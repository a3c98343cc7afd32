"""Write serving/serve_config.yaml into the RayService's ``serveConfigV2`` (deploy/kuberay/rayservice.yaml).

The cluster runs the same applications, deployments and per-arm settings as the one machine; only what
a cluster needs differently is changed (:data:`CLUSTER_OVERRIDES`): the HTTP proxies listen on the pod's
interface, on every node. Everything else in the manifest is left as it is (text replacement of the
``serveConfigV2: |`` block only).

    python deploy/kuberay/sync_serve_config.py            # rewrite the block
    python deploy/kuberay/sync_serve_config.py --check    # exit 1 when the manifest is out of date
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "serving" / "serve_config.yaml"
MANIFEST = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
HEADER = "# generated from serving/serve_config.yaml by deploy/kuberay/sync_serve_config.py: edit that file"
# Top-level keys of the Serve config that differ on a cluster, and their cluster values.
CLUSTER_OVERRIDES: dict[str, Any] = {
    "proxy_location": "EveryNode",  # a proxy per node: KubeRay's serve Service spreads over them
    "http_options": {"host": "0.0.0.0"},  # merged into the file's http_options (port, timeout stay)
}
_BLOCK = re.compile(r"^(?P<indent> *)serveConfigV2: \|\n(?P<body>(?:(?P=indent) {2}.*\n|\n)*)", re.MULTILINE)


def cluster_config(serve_config: dict[str, Any]) -> dict[str, Any]:
    """``serve_config`` as the cluster runs it: :data:`CLUSTER_OVERRIDES` applied."""
    out = copy.deepcopy(serve_config)
    for key, value in CLUSTER_OVERRIDES.items():
        out[key] = {**(out.get(key) or {}), **value} if isinstance(value, dict) else value
    return out


def render_block(serve_config: dict[str, Any], indent: str) -> str:
    """The ``serveConfigV2: |`` block (key line included) for ``serve_config``."""
    body = yaml.safe_dump(cluster_config(serve_config), sort_keys=False, default_flow_style=False, width=100)
    lines = [HEADER, *body.rstrip("\n").split("\n")]
    inner = indent + "  "
    return f"{indent}serveConfigV2: |\n" + "".join(f"{inner}{line}\n" if line else "\n" for line in lines)


def synced(manifest_text: str, serve_config: dict[str, Any]) -> str:
    """``manifest_text`` with its ``serveConfigV2`` block rendered from ``serve_config``."""
    match = _BLOCK.search(manifest_text)
    if match is None:
        raise ValueError("no `serveConfigV2: |` block in the manifest")
    block = render_block(serve_config, match.group("indent"))
    return manifest_text[: match.start()] + block + manifest_text[match.end() :]


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check`` compare) the manifest; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the manifest is up to date")
    args = parser.parse_args(argv)
    current = MANIFEST.read_text()
    wanted = synced(current, yaml.safe_load(SERVE_CONFIG.read_text()))
    if args.check:
        if current != wanted:
            print(f"{MANIFEST.relative_to(ROOT)} is out of date: run {Path(__file__).relative_to(ROOT)}")
            return 1
        return 0
    MANIFEST.write_text(wanted)
    print(f"wrote serveConfigV2 of {MANIFEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
