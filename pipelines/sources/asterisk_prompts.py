"""Real studio speech: single-voice Asterisk prompt packages outside ``asterisk-core-sounds``.

Each Debian package of :data:`VOICES` is the work of one voice actor, named in its documentation:

* ``asterisk-prompt-es-co``: Colombian Spanish, "grabados por Avatar Ltda. con la voz de July E.
  Jiménez" (``/usr/share/doc/asterisk-prompt-es-co/LEEME``), GPL-2;
* ``asterisk-prompt-fr-armelle``: French, "Voice actor: Armelle Desjardins"
  (``/usr/share/doc/asterisk-prompt-fr-armelle/copyright``), BSD-style licence.

Both are raw GSM 6.10 at 8 kHz (decoded with sox). They install into the generic
``/usr/share/asterisk/sounds/{es,fr}`` folders, which ``asterisk-core-sounds-fr`` (the meta package)
would make an alternative link to another voice, so the files of a speaker are the package's own
regular files as ``dpkg-query -L`` lists them, never a folder's contents. Speaker id =
``asterisk-prompt:<name>``: a namespace of its own (two persons: both train, see ``splits.py``), so
the ``asterisk`` namespace and its split are unchanged. Prompts shorter than :data:`MIN_DURATION_S`
(digits, letters) are skipped; each speaker keeps at most ``cfg.real_cap`` (a seeded sample).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from flywheel.audio import resample, validate_samples
from pipelines.sources.base import (
    RawUtterance,
    SourceConfig,
    SourceUnavailableError,
    cap_items,
    require_binary,
    safe_id,
    select_speakers,
)

SOURCE = "asterisk_prompts"
NAMESPACE = "asterisk-prompt"
SOUNDS_ROOT = Path("/usr/share/asterisk/sounds")
MIN_DURATION_S = 1.0
GSM_RATE = 8000
GSM_FRAME_BYTES, GSM_FRAME_SAMPLES = 33, 160  # raw GSM 6.10: 33 bytes per 20 ms frame


@dataclass(frozen=True)
class Voice:
    package: str
    name: str  # speaker name inside the namespace
    lang: str
    actor: str  # as the package documents it


VOICES = (
    Voice("asterisk-prompt-es-co", "es_CO_July", "es", "July E. Jiménez"),
    Voice("asterisk-prompt-fr-armelle", "fr_Armelle", "fr", "Armelle Desjardins"),
)


def package_files(package: str) -> list[Path]:
    """The regular files that ``package`` installed (``dpkg-query -L``), none through a link; [] if absent."""
    if shutil.which("dpkg-query") is None:
        return []
    out = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return []
    files = []
    for line in out.stdout.splitlines():
        path = Path(line.strip())
        if path.is_file() and not path.is_symlink() and os.path.realpath(path) == str(path):
            files.append(path)
    return sorted(files)


def gsm_duration(path: Path) -> float:
    """Seconds of a raw GSM 6.10 file, from its size."""
    return path.stat().st_size // GSM_FRAME_BYTES * GSM_FRAME_SAMPLES / GSM_RATE


@lru_cache(maxsize=4)
def prompt_files(min_duration: float = MIN_DURATION_S) -> dict[str, list[Path]]:
    """Speaker id -> the ``.gsm`` prompts (>= ``min_duration`` s) of each installed :data:`VOICES` package."""
    out: dict[str, list[Path]] = {}
    for voice in VOICES:
        files = [
            p for p in package_files(voice.package) if p.suffix == ".gsm" and gsm_duration(p) >= min_duration
        ]
        if files:
            out[f"{NAMESPACE}:{voice.name}"] = files
    return out


def _files() -> dict[str, list[Path]]:
    files = prompt_files()
    if not files:
        packages = ", ".join(v.package for v in VOICES)
        raise SourceUnavailableError(f"none of {packages} is installed (see pipelines/install_packages.sh)")
    return files


def load_gsm(path: Path) -> np.ndarray:
    """A raw GSM file as 16 kHz mono float32 (sox decodes, then the project's resampler)."""
    require_binary("sox")
    cmd = ["sox", "-V1", "-t", "gsm", "-r", str(GSM_RATE), "-c", "1", str(path), "-t", "f32", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    samples = resample(np.frombuffer(raw, dtype="<f4").astype(np.float32), GSM_RATE)
    validate_samples(samples, 16_000, min_duration=0.0)
    return samples


def list_speakers(cfg: SourceConfig) -> list[str]:
    """Ids of the chosen speakers (``asterisk-prompt:<name>``), sorted."""
    return select_speakers(_files(), cfg, SOURCE)


def iter_utterances(cfg: SourceConfig) -> Iterator[RawUtterance]:
    """The chosen speakers' prompts (>= 1 s, at most ``cfg.real_cap`` each), resampled to 16 kHz."""
    files = _files()
    voices = {f"{NAMESPACE}:{v.name}": v for v in VOICES}
    for speaker in select_speakers(files, cfg, SOURCE):
        voice = voices[speaker]
        by_name = {
            (p.relative_to(SOUNDS_ROOT) if p.is_relative_to(SOUNDS_ROOT) else p).as_posix(): p
            for p in files[speaker]
        }
        for rel in cap_items(list(by_name), cfg.real_cap, cfg.seed, SOURCE, voice.name):
            yield RawUtterance(
                speaker=speaker,
                utt_id=f"{NAMESPACE}-{voice.name}-{safe_id(rel.removesuffix('.gsm').replace('/', '-'))}",
                source=SOURCE,
                samples=load_gsm(by_name[rel]),
                lang=voice.lang,
                gender="",
            )
