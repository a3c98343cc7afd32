"""Peer systems that live in the teacher environment (``.venv-teacher``): ``senko`` and ``pyannote``.

Their libraries (pyannote.audio 4 with torchaudio, senko with numba/hdbscan) do not belong in the
serving environment, so they run in a worker process of that environment
(:mod:`flywheel.systems.peer_worker`), started on first use and kept for the next file. Audio goes to
the worker in memory (float32 over a pipe) and segments come back as JSON; nothing is read from disk
or downloaded by the worker. The worker's own output goes to ``runtime/logs/peer-<name>.log``.

    >>> from flywheel.systems import get_system
    >>> get_system("senko").diarize(waveform, uri="meeting")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from pyannote.core import Annotation, Segment

from flywheel.config import REPO_ROOT, load_params

TEACHER_PYTHON = REPO_ROOT / ".venv-teacher" / "bin" / "python"
LOG_DIR = REPO_ROOT / "runtime" / "logs"


# senko 0.2.2's libfbank_extractor.so is built with AVX-512: on a CPU without it the worker dies of SIGILL
ILLEGAL_INSTRUCTION = "illegal instruction: its native code needs CPU instructions this machine lacks"


class PeerError(RuntimeError):
    """The peer worker could not start, died, or reported an error for one file."""


def teacher_python() -> Path:
    """The teacher environment's interpreter (``FLYWHEEL_TEACHER_PYTHON`` overrides)."""
    path = Path(os.environ.get("FLYWHEEL_TEACHER_PYTHON", TEACHER_PYTHON))
    if not path.exists():
        raise PeerError(
            f"{path} not found: the senko and pyannote peers run in the teacher environment; "
            "create it with `bash scripts/setup_teacher.sh`"
        )
    return path


class ExternalSystem:
    """A diarization system run by :mod:`flywheel.systems.peer_worker` in the teacher environment."""

    def __init__(self, name: str, threads: int = 1, **options: Any):
        config = dict(load_params().get("systems", {}).get(name, {}))
        config.update({k: v for k, v in options.items() if v is not None})
        self.name = name
        self.options = config
        self.threads = threads
        self._proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "PYANNOTE_METRICS_ENABLED": "false",
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
            "HF_HUB_OFFLINE": "1",
        }
        with open(LOG_DIR / f"peer-{self.name}.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    str(teacher_python()),
                    "-m",
                    "flywheel.systems.peer_worker",
                    self.name,
                    "--options",
                    json.dumps(self.options),
                    "--threads",
                    str(self.threads),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=REPO_ROOT,
            )
        ready = self._read(proc)
        if ready.get("status") != "ready":
            raise PeerError(f"{self.name} worker did not start: {ready.get('error', ready)}")
        return proc

    def _read(self, proc: subprocess.Popen) -> dict[str, Any]:
        line = proc.stdout.readline() if proc.stdout else b""
        if not line:
            code = proc.wait()
            why = f", {ILLEGAL_INSTRUCTION}" if code == -signal.SIGILL else ""
            raise PeerError(
                f"{self.name} worker exited (code {code}{why}); see {LOG_DIR / f'peer-{self.name}.log'}"
            )
        return json.loads(line)

    def diarize(
        self, waveform: np.ndarray, uri: str = "audio", num_speakers: int | None = None
    ) -> Annotation:
        """Who spoke when, from the peer; labels ``SPEAKER_00, ...``.

        Raises:
            PeerError: the worker failed on this file (it is restarted for the next one).
        """
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        samples = np.ascontiguousarray(waveform, dtype=np.float32)
        header = {"uri": uri, "num_samples": len(samples), "num_speakers": num_speakers}
        try:
            self._proc.stdin.write(json.dumps(header).encode() + b"\n" + samples.tobytes())
            self._proc.stdin.flush()
            reply = self._read(self._proc)
        except (BrokenPipeError, PeerError) as exc:
            self._proc = None
            raise PeerError(f"{self.name} failed on {uri}: {exc}") from exc
        if "error" in reply:
            raise PeerError(f"{self.name} failed on {uri}: {reply['error']}")
        annotation = Annotation(uri=uri)
        labels = {lab: f"SPEAKER_{i:02d}" for i, lab in enumerate(sorted({s[2] for s in reply["segments"]}))}
        for start, end, label in reply["segments"]:
            if end > start:
                annotation[Segment(start, end), annotation.new_track(Segment(start, end))] = labels[label]
        return annotation

    def close(self) -> None:
        """Stop the worker (also done when the process exits)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def SenkoSystem(**options: Any) -> ExternalSystem:
    """senko 0.2.2's own CPU pipeline (silero VAD, CAM++ on 1.5 s windows, spectral clustering)."""
    return ExternalSystem("senko", **options)


def PyannoteSystem(**options: Any) -> ExternalSystem:
    """pyannote.audio 4.0.7's SpeakerDiarization with segmentation-3.0 and CAM++ (tuned on dev-real)."""
    return ExternalSystem("pyannote", **options)
