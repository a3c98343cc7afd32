#!/usr/bin/env bash
# The Ray head of docker-compose.yml (service ray-head), in the serve image (docker/serve.Dockerfile):
#   1. a Ray head: GCS on 6379, dashboard + Jobs API on 8265 (`ray job submit`: the pseudo-label job);
#   2. Serve's HTTP proxy with serving/serve_config.yaml's http_options but bound to all interfaces of the
#      container (docker/start_serve.py): serving.control.deploy binds a Serve it starts itself to
#      127.0.0.1, which a published port cannot reach; a Serve already running keeps its options;
#   3. what `flywheel serve up` runs, joined to this head: `python -m serving.runner`, which deploys the
#      Serve config (both arms + teacher) and stays in the foreground until SIGTERM.
# Ray's own knobs come from the environment (docker-compose.yml: RAY_SERVE_THROUGHPUT_OPTIMIZED, ...).
set -euo pipefail
SERVE_CONFIG=${SERVE_CONFIG:-serving/serve_config.yaml}
# Calls up to 4 MiB go inline in the RPC (flywheel.ray_runtime.INLINE_CALL_BYTES; docs/serving.md).
ray start --head --port=6379 --dashboard-host=0.0.0.0 --dashboard-port=8265 --disable-usage-stats \
  --system-config='{"max_direct_call_object_size": 4194304}' \
  ${RAY_NUM_CPUS:+--num-cpus="$RAY_NUM_CPUS"}
python docker/start_serve.py --config "$SERVE_CONFIG" --host 0.0.0.0
exec python -m serving.runner --address auto --config "$SERVE_CONFIG"
