#!/usr/bin/env bash
# Label Studio (the human review queue of the flywheel) in its own virtualenv, .venv-label-studio:
# it pins pyarrow<25 and an old pytz that the project's .venv must not inherit. Also the Debian
# chromium + chromium-driver that the browser test drives headless (tests/labeling/test_browser.py).
# Idempotent: re-running it only installs what is missing. Called at the end of scripts/setup.sh.
#   SKIP_APT=1            do not touch Debian packages
#   SKIP_LABEL_STUDIO=1   skip this whole script (machines that never run the review queue)
set -euo pipefail
cd "$(dirname "$0")/.."
LABEL_STUDIO_VERSION=${LABEL_STUDIO_VERSION:-1.23.2}
VENV=.venv-label-studio
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [ "${SKIP_LABEL_STUDIO:-0}" = "1" ]; then
  echo "label studio: skipped (SKIP_LABEL_STUDIO=1)"
  exit 0
fi

if [ "${SKIP_APT:-0}" != "1" ]; then
  MISSING=()
  for pkg in chromium chromium-driver; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || MISSING+=("$pkg")
  done
  if [ "${#MISSING[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
  fi
fi

# uv from the project's .venv (scripts/setup.sh installs it); a plain pip otherwise.
UV=""
[ -x .venv/bin/uv ] && UV=.venv/bin/uv
installed_version() {
  [ -x "$VENV/bin/python" ] || return 0
  "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('label-studio'))" 2>/dev/null || true
}
if [ "$(installed_version)" != "$LABEL_STUDIO_VERSION" ]; then
  if [ -n "$UV" ]; then
    [ -x "$VENV/bin/python" ] || "$UV" venv --quiet --python "$PY" "$VENV"
    "$UV" pip install --quiet --python "$VENV/bin/python" "label-studio==$LABEL_STUDIO_VERSION"
  else
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet "label-studio==$LABEL_STUDIO_VERSION"
  fi
fi
[ "$(installed_version)" = "$LABEL_STUDIO_VERSION" ] || { echo "label-studio $LABEL_STUDIO_VERSION did not install in $VENV" >&2; exit 1; }
echo "label studio $LABEL_STUDIO_VERSION ready in $VENV ('make label-studio' starts it)"
