#!/bin/sh
# First start of the PostgreSQL volume only (docker-entrypoint-initdb.d): POSTGRES_DB (MLflow's backend
# store) is created by the image; this adds the prediction log's database (FLYWHEEL_DATABASE_URL), owned by
# the same user. Its tables come from `flywheel db upgrade` (service db-migrate).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${PREDICTIONS_DB}\" OWNER \"${POSTGRES_USER}\";"
