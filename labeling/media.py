"""Audio clips Label Studio serves to the browser (local-files storage).

Each task gets its own 16 kHz mono 16-bit WAV clip (at most ``task_max_s`` long), so a reviewer's
browser never downloads a whole long recording. Clips live under ``<media_dir>/audio/<item_id>/`` and
are served by Label Studio from ``/data/local-files/?d=audio/<item_id>/<offset_ms>.wav``
(``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<media_dir>``, storage path ``<media_dir>/audio``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
import soundfile as sf

from flywheel.audio import SAMPLE_RATE, resample, to_mono, write_audio
from labeling.items import TaskSpan

STORAGE_SUBDIR = "audio"


def clip_relpath(item_id: str, span: TaskSpan) -> str:
    """Path of a task's clip relative to the media root (``audio/<item_id>/<offset_ms>.wav``)."""
    return f"{STORAGE_SUBDIR}/{item_id}/{span.offset_ms}.wav"


def clip_url(relpath: str) -> str:
    """The URL Label Studio serves a clip under (relative to the server)."""
    return f"/data/local-files/?d={quote(relpath)}"


def write_clip(source: Path, span: TaskSpan, target: Path) -> Path:
    """Cut ``span`` out of ``source`` as 16 kHz mono WAV at ``target`` (atomic; kept when present)."""
    if target.exists():
        return target
    with sf.SoundFile(str(source)) as fh:
        rate = fh.samplerate
        fh.seek(min(round(span.offset * rate), fh.frames))
        samples = fh.read(round(span.duration * rate), dtype="float32", always_2d=True)
    if samples.size == 0:
        raise ValueError(f"{source}: nothing to read at {span.offset:.3f}-{span.end:.3f} s")
    mono = np.ascontiguousarray(to_mono(samples), dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = resample(mono, rate, SAMPLE_RATE)
    tmp = target.with_name(f".{target.name}.tmp.wav")
    write_audio(tmp, mono, SAMPLE_RATE)
    os.replace(tmp, target)
    return target
