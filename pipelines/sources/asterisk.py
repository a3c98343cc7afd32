"""Real studio speech: Asterisk IVR prompts, 8 kHz, one speaker per folder.

``/usr/share/asterisk/sounds/<lang>_<CC>_<f|m>_<Name>/`` (sub-folders included; ``silence/``
left out). Speaker id = ``asterisk:<folder>``. Prompts shorter than :data:`MIN_DURATION_S` (digits,
letters) are skipped and each speaker keeps at most ``cfg.real_cap`` prompts (a seeded sample).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import soundfile as sf

from flywheel.audio import load_audio
from pipelines.sources.base import (
    RawUtterance,
    SourceConfig,
    SourceUnavailableError,
    cap_items,
    safe_id,
    select_speakers,
)

SOURCE = "asterisk"
ROOT = Path("/usr/share/asterisk/sounds")
MIN_DURATION_S = 1.0
SKIP_DIRS = frozenset({"silence"})
_FOLDER = re.compile(r"^(?P<lang>[a-z]{2})_(?P<cc>[A-Z]{2})_(?P<gender>[fm])_(?P<name>\w+)$")
# Folders that may be the same person under another language: kept in one split (see splits.py).
SAME_PERSON: dict[str, str] = {"asterisk:es_MX_f_Allison": "asterisk:en_US_f_Allison"}


def speaker_folders(root: Path = ROOT) -> dict[str, Path]:
    """Folder name -> path of every ``<lang>_<CC>_<f|m>_<Name>`` folder under ``root``."""
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and _FOLDER.match(p.name)}


def prompt_files(folder: Path, min_duration: float = MIN_DURATION_S) -> list[str]:
    """Relative paths of the folder's wav prompts that last at least ``min_duration`` seconds."""
    out = []
    for path in sorted(folder.rglob("*.wav")):
        rel = path.relative_to(folder)
        if rel.parts[0] in SKIP_DIRS:
            continue
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError):
            continue
        if info.frames / max(info.samplerate, 1) >= min_duration:
            out.append(rel.as_posix())
    return out


def _folders(root: Path) -> dict[str, Path]:
    """Speaker id -> folder; raises :class:`SourceUnavailableError` when there is none."""
    folders = {f"{SOURCE}:{name}": path for name, path in speaker_folders(root).items()}
    if not folders:
        raise SourceUnavailableError(f"no Asterisk sound folders under {root} (asterisk-core-sounds-*-wav)")
    return folders


def list_speakers(cfg: SourceConfig, root: Path = ROOT) -> list[str]:
    """Ids of the chosen speakers (``asterisk:<folder>``), sorted."""
    return select_speakers(_folders(root), cfg, SOURCE)


def iter_utterances(cfg: SourceConfig, root: Path = ROOT) -> Iterator[RawUtterance]:
    """The chosen speakers' prompts (>= 1 s, at most ``cfg.real_cap`` each), resampled to 16 kHz."""
    folders = _folders(root)
    for speaker in select_speakers(folders, cfg, SOURCE):
        name = speaker.split(":", 1)[1]
        meta = _FOLDER.match(name)
        assert meta is not None
        for rel in cap_items(prompt_files(folders[speaker]), cfg.real_cap, cfg.seed, SOURCE, name):
            yield RawUtterance(
                speaker=speaker,
                utt_id=f"{SOURCE}-{name}-{safe_id(rel.removesuffix('.wav').replace('/', '-'))}",
                source=SOURCE,
                samples=load_audio(folders[speaker] / rel, min_duration=0.0),
                lang=meta["lang"],
                gender=meta["gender"],
            )
