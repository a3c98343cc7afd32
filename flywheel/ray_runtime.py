"""Join the project's Ray, or start one bound to loopback: the one way every package gets its Ray.

The Serve runner (``serving.control.start_ray``, which adds the Serve-only environment through
``extra_env``), the pseudo-label job, the service test fixtures and the load / reliability benchmarks
all start Ray through :func:`start_ray`, so they share one set of Ray settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

LOOPBACK = "127.0.0.1"
# Ray puts call arguments above 100 KiB into the object store (an extra put/get round trip per
# call); audio travels between processes as 16-bit PCM (32 KB per second: the Serve ingress -> arm
# hop, the pseudo-label tasks), so calls up to this size are sent inline in the RPC instead (about
# 2 minutes of audio).
INLINE_CALL_BYTES = 4 * 1024 * 1024


def ray_env() -> dict[str, str]:
    """Environment for the process that starts a local Ray: every socket on loopback, no usage
    stats, one BLAS thread per worker."""
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # with _node_ip_address: every socket on loopback
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYANNOTE_METRICS_ENABLED": "false",
        "OMP_NUM_THREADS": "1",
    }


def start_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    dashboard: bool = False,
    extra_env: Mapping[str, str] | None = None,
) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), or start a local Ray bound to 127.0.0.1.

    A Ray already initialised in this process is kept as it is. Before a local start, :func:`ray_env`
    and then ``extra_env`` are set in ``os.environ`` where the variable is not set yet (the Ray
    processes inherit them); joining a cluster sets nothing.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        return
    for key, value in {**ray_env(), **(extra_env or {})}.items():
        os.environ.setdefault(key, value)
    ray.init(
        _node_ip_address=LOOPBACK,
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        dashboard_host=LOOPBACK,
        logging_level="WARNING",
        log_to_driver=False,
        configure_logging=True,
        _system_config={"max_direct_call_object_size": INLINE_CALL_BYTES},
    )
