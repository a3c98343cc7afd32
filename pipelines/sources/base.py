"""Shared types and helpers of the inventory sources.

Every source module exposes ``iter_utterances(cfg: SourceConfig) -> Iterator[RawUtterance]``
that yields single-speaker recordings as 16 kHz mono float32. Speaker ids are globally unique
(``"<namespace>:<name>"``, e.g. ``"espeak:m3"``, ``"libri:103"``, ``"tts:slt"``).
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flywheel.audio import load_audio
from flywheel.config import get_settings

DEFAULT_SHARED_DATA_DIR = get_settings().shared_data_dir
# Recorded sources (asterisk, fillets, tuxpaint, ...) keep at most this x utterances_per_tts_speaker each
# (300 in the full profile): they have few speakers but real acoustics, so they get more each.
REAL_CAP_FACTOR = 10
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SourceUnavailableError(RuntimeError):
    """The Debian package or data folder a source needs is not installed."""


@dataclass(frozen=True)
class SourceConfig:
    """What a source should produce.

    Attributes:
        max_speakers: keep at most this many speakers (``None``: all), chosen deterministically.
        utterances_per_tts_speaker: number of sentences each TTS voice synthesizes.
        seed: base seed; every random choice derives from it and stable keys (never from order).
        shared_data_dir: the project's shared data folder (``librispeech-251/`` lives there).
        work_dir: a folder for temporary files (a private sub-folder is made inside it).
        max_utterances_per_real_speaker: cap for recorded sources (asterisk, fillets, ...);
            ``None``: ``REAL_CAP_FACTOR * utterances_per_tts_speaker``.
        shard: ``(index, count)``: yield only the speakers whose position in the selected,
            sorted speaker list is ``index`` modulo ``count`` (lets a pool split one source).
    """

    max_speakers: int | None = None
    utterances_per_tts_speaker: int = 30
    seed: int = 1234
    shared_data_dir: Path = DEFAULT_SHARED_DATA_DIR
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    max_utterances_per_real_speaker: int | None = None
    shard: tuple[int, int] = (0, 1)

    @property
    def real_cap(self) -> int:
        """Maximum number of utterances kept per speaker of a recorded source."""
        if self.max_utterances_per_real_speaker is not None:
            return self.max_utterances_per_real_speaker
        return REAL_CAP_FACTOR * self.utterances_per_tts_speaker


@dataclass
class RawUtterance:
    """One single-speaker recording as a source yields it (before trimming and labelling)."""

    speaker: str
    utt_id: str
    source: str
    samples: np.ndarray  # 16 kHz mono float32
    lang: str = "en"
    gender: str = ""  # "f", "m" or "" (unknown)
    text: str = ""


def stable_int(*keys: object) -> int:
    """A 64-bit integer from ``keys`` that is the same in every process and on every machine."""
    digest = hashlib.sha256("\x1f".join(str(k) for k in keys).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def rng_for(*keys: object) -> random.Random:
    """A ``random.Random`` seeded from ``keys`` (see :func:`stable_int`)."""
    return random.Random(stable_int(*keys))


def select_speakers(names: Iterable[str], cfg: SourceConfig, source: str) -> list[str]:
    """Deterministic speaker choice: sort, keep a seeded sample of ``cfg.max_speakers``, shard.

    The sample depends only on the seed, the source name and the set of names, so the same
    speakers are chosen whatever the shard; the shard then keeps every ``count``-th of them.
    """
    chosen = sorted(set(names))
    if cfg.max_speakers is not None and cfg.max_speakers < len(chosen):
        chosen = sorted(rng_for(cfg.seed, "speakers", source).sample(chosen, cfg.max_speakers))
    index, count = cfg.shard
    return [name for i, name in enumerate(chosen) if i % count == index]


def cap_items(items: Sequence[str], cap: int, *keys: object) -> list[str]:
    """At most ``cap`` of ``items`` (sorted first), a seeded sample when there are more."""
    ordered = sorted(items)
    if len(ordered) <= cap:
        return ordered
    return sorted(rng_for(*keys).sample(ordered, cap))


def safe_id(text: str) -> str:
    """A filesystem-safe form of ``text`` (letters, digits, ``.``, ``_``, ``-``)."""
    return _UNSAFE.sub("_", text).strip("_") or "x"


def require_binary(name: str) -> None:
    """Raise :class:`SourceUnavailableError` when the executable ``name`` is not installed."""
    if shutil.which(name) is None:
        raise SourceUnavailableError(f"{name!r} is not installed (see pipelines/install_packages.sh)")


def run_to_wav(cmd: list[str], wav: Path, timeout: float = 120.0, stdin: str | None = None) -> np.ndarray:
    """Run a TTS command that writes ``wav`` and return its audio as 16 kHz mono float32."""
    subprocess.run(
        cmd,
        input=stdin,
        text=True,
        check=True,
        timeout=timeout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    samples = load_audio(wav, min_duration=0.0)
    wav.unlink(missing_ok=True)
    return samples


def private_tmp(cfg: SourceConfig, prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder inside ``cfg.work_dir`` (removed when the context exits)."""
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=cfg.work_dir)


def recorded_utterances(
    files: dict[str, list[Path]],
    cfg: SourceConfig,
    source: str,
    root: Path,
    utt_id: Callable[[str, Path], str],
    lang: Callable[[str], str],
) -> Iterator[RawUtterance]:
    """The chosen speakers' recordings of a recorded source (``files``: speaker id -> audio files under
    ``root``), at most ``cfg.real_cap`` per speaker (chosen by their path under ``root``), loaded and
    resampled to 16 kHz; ``utt_id(speaker, path)`` and ``lang(speaker)`` name them."""
    for speaker in select_speakers(files, cfg, source):
        by_name = {str(p.relative_to(root)): p for p in files[speaker]}
        for rel in cap_items(list(by_name), cfg.real_cap, cfg.seed, source, speaker):
            path = by_name[rel]
            yield RawUtterance(
                speaker=speaker,
                utt_id=utt_id(speaker, path),
                source=source,
                samples=load_audio(path, min_duration=0.0),
                lang=lang(speaker),
                gender="",
            )
