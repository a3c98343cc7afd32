"""Real read speech: ``<shared_data_dir>/librispeech-251/`` (one ~12 s FLAC per speaker, CC-BY-4.0).

Speaker id = ``libri:<file-name prefix>``; gender from ``SPEAKERS.TXT`` when it is there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from flywheel.audio import load_audio
from pipelines.sources.base import (
    RawUtterance,
    SourceConfig,
    SourceUnavailableError,
    cap_items,
    safe_id,
    select_speakers,
)

SOURCE = "librispeech"
NAMESPACE = "libri"
FOLDER = "librispeech-251"


def read_genders(path: Path) -> dict[str, str]:
    """Reader id -> ``"f"``/``"m"`` from a LibriSpeech ``SPEAKERS.TXT`` (empty if missing)."""
    if not path.exists():
        return {}
    genders = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(";") or "|" not in line:
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 2 and fields[1] in ("F", "M"):
            genders[fields[0]] = fields[1].lower()
    return genders


def files_by_speaker(cfg: SourceConfig) -> dict[str, list[str]]:
    """Speaker id (``libri:<reader>``) -> FLAC file names."""
    root = Path(cfg.shared_data_dir) / FOLDER
    files = sorted(root.glob("*.flac")) if root.is_dir() else []
    if not files:
        raise SourceUnavailableError(
            f"no LibriSpeech FLAC files under {root} (the shared data sits in ../shared/data beside the "
            "checkout; elsewhere, set FLYWHEEL_SHARED_DATA_DIR)"
        )
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for f in files:
        by_speaker[f"{NAMESPACE}:{f.name.split('-', 1)[0]}"].append(f.name)
    return dict(by_speaker)


def list_speakers(cfg: SourceConfig) -> list[str]:
    """Ids of the chosen speakers, sorted."""
    return select_speakers(files_by_speaker(cfg), cfg, SOURCE)


def iter_utterances(cfg: SourceConfig) -> Iterator[RawUtterance]:
    """Every FLAC of the chosen speakers (at most ``cfg.real_cap`` each)."""
    root = Path(cfg.shared_data_dir) / FOLDER
    by_speaker = files_by_speaker(cfg)
    genders = read_genders(root / "SPEAKERS.TXT")
    for speaker in select_speakers(by_speaker, cfg, SOURCE):
        reader = speaker.split(":", 1)[1]
        for name in cap_items(by_speaker[speaker], cfg.real_cap, cfg.seed, SOURCE, reader):
            yield RawUtterance(
                speaker=speaker,
                utt_id=f"{NAMESPACE}-{safe_id(Path(name).stem)}",
                source=SOURCE,
                samples=load_audio(root / name, min_duration=0.0),
                lang="en",
                gender=genders.get(reader, ""),
            )
