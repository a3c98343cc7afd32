# Label Studio, the human review queue (docs/labeling.md), installed the way the one-machine set-up
# installs it: scripts/setup_label_studio.sh (its own venv, label-studio pinned there). Used by
# docker-compose.yml (service label-studio).
#
#   docker build -f docker/label-studio.Dockerfile -t diarization-flywheel/label-studio:1.23.2 .

FROM python:3.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY scripts/setup_label_studio.sh scripts/setup_label_studio.sh
# SKIP_APT: no Chromium (that is for the browser test); without the project's .venv the script uses pip.
RUN SKIP_APT=1 bash scripts/setup_label_studio.sh \
 && useradd --create-home --uid 1000 labelstudio \
 && mkdir -p /label-studio/data /label-studio/media \
 && chown -R labelstudio:labelstudio /label-studio
ENV PATH=/app/.venv-label-studio/bin:${PATH} \
    LABEL_STUDIO_BASE_DATA_DIR=/label-studio/data \
    PYTHONUNBUFFERED=1
USER labelstudio
EXPOSE 8080
# 0.0.0.0 inside the container network; docker-compose.yml publishes it on the host's loopback only.
CMD ["label-studio", "start", "--internal-host", "0.0.0.0", "-p", "8080", "--no-browser"]
