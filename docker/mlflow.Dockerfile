# MLflow tracking server + model registry (docs/mlflow.md), for docker-compose.yml (service mlflow):
# metadata in PostgreSQL, artifacts in MinIO, proxied by the server (--serve-artifacts), so clients need
# no S3 credentials. Installs requirements/mlflow.txt.
#
#   docker build -f docker/mlflow.Dockerfile -t diarization-flywheel/mlflow:3.17.2 .

FROM python:3.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
COPY requirements/mlflow.txt /tmp/requirements-mlflow.txt
RUN pip install --no-cache-dir -r /tmp/requirements-mlflow.txt \
 && useradd --create-home --uid 1000 mlflow
USER mlflow
EXPOSE 5000
