"""Real read speech: Tux Paint stamp descriptions (``tuxpaint-stamps-default``, 44.1 kHz Ogg Vorbis).

Every stamp may have a spoken description per language, ``<stamp>_desc_<lang>.ogg`` beside its
image under ``/usr/share/tuxpaint/stamps/<category>/...``: a word or a short phrase, recorded by
volunteers. The package's changelog (``/usr/share/doc/tuxpaint-stamps-default/changelog.gz``,
releases 2009.June.28 and 2014.August.13) credits the descriptive sounds of each language below to
one person (:data:`VOICES`), so one language is one speaker: ``tuxpaint:<lang>``.

Left out, because another person may speak them:

* ``symbols/`` (letters, numbers, maths, money, chess, ...): the changelog credits number and letter
  sounds to other people (Schoolsplay recordings, the Greek i18n team, "his son" for Spanish);
* a recording whose bytes also appear under another language (a shared sound effect, not a voice);
* repeats: one recording is often reused for several stamps (``apple`` and ``cartoon/apple``); the
  first path in sorted order is kept.

Languages with more than one credited voice (French), with files of uncredited origin (Catalan: one
2006 credit, files of three encoder generations) or with less than about 2 minutes of speech (Dutch,
English, Lithuanian, Brazilian Portuguese, Malayalam) are not used; see docs/data.md.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import soundfile as sf

from pipelines.sources.base import (
    RawUtterance,
    SourceConfig,
    SourceUnavailableError,
    recorded_utterances,
    safe_id,
    select_speakers,
)

SOURCE = "tuxpaint"
PACKAGE = "tuxpaint-stamps-default"
ROOT = Path("/usr/share/tuxpaint/stamps")
# language -> the one person the changelog credits with its descriptive sounds
VOICES: dict[str, str] = {
    "be": "Kseniya Buraya",
    "bg": "Krasimir Petkov",
    "da": "Joe Dalton",
    "el": "Kiriaki Serafeim",
    "es": "Estefanía Ortiz",
    "ro": "Tabbytha",
    "ru": "Edwin Veber",
}
SKIP_DIRS = frozenset({"symbols"})
MIN_DURATION_S = 0.5
_DESC = re.compile(r"^(?P<stamp>.+)_desc(?:_(?P<lang>[A-Za-z]{2,3}(?:_[A-Za-z]{2})?))?\.ogg$")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=4)
def description_files(root: Path = ROOT) -> dict[str, list[Path]]:
    """Speaker id -> the usable description recordings of each :data:`VOICES` language, sorted."""
    if not root.is_dir():
        return {}
    by_lang: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.rglob("*_desc*.ogg")):
        match = _DESC.match(path.name)
        if match and path.is_file():
            by_lang[match["lang"] or "en"].append(path)
    sizes = {path: path.stat().st_size for paths in by_lang.values() for path in paths}
    size_count = Counter(sizes.values())
    # Only a file whose size another file shares can be a copy: hash those, name the rest by path.
    digests = {path: _digest(path) if size_count[size] > 1 else str(path) for path, size in sizes.items()}
    langs_of: dict[str, set[str]] = defaultdict(set)
    for lang, paths in by_lang.items():
        for path in paths:
            langs_of[digests[path]].add(lang)
    out: dict[str, list[Path]] = {}
    for lang in sorted(VOICES):
        seen: set[str] = set()
        kept = []
        for path in by_lang.get(lang, []):
            digest = digests[path]
            if path.relative_to(root).parts[0] in SKIP_DIRS or len(langs_of[digest]) > 1 or digest in seen:
                continue
            seen.add(digest)
            try:
                info = sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError):
                continue
            if info.frames / max(info.samplerate, 1) >= MIN_DURATION_S:
                kept.append(path)
        if kept:
            out[f"{SOURCE}:{lang}"] = kept
    return out


def _files(root: Path) -> dict[str, list[Path]]:
    """:func:`description_files`, raising :class:`SourceUnavailableError` when there are none."""
    files = description_files(root)
    if not files:
        raise SourceUnavailableError(f"no Tux Paint stamp descriptions under {root} ({PACKAGE})")
    return files


def list_speakers(cfg: SourceConfig, root: Path = ROOT) -> list[str]:
    """Ids of the chosen speakers (``tuxpaint:<lang>``), sorted."""
    return select_speakers(_files(root), cfg, SOURCE)


def utterance_id(path: Path, lang: str, root: Path = ROOT) -> str:
    """``tuxpaint-<lang>-<category>-...-<stamp>`` of a description recording."""
    rel = path.relative_to(root)
    stamp = path.name.removesuffix(f"_desc_{lang}.ogg")
    return f"{SOURCE}-{lang}-{safe_id('-'.join([*rel.parts[:-1], stamp]))}"


def iter_utterances(cfg: SourceConfig, root: Path = ROOT) -> Iterator[RawUtterance]:
    """The chosen speakers' descriptions (at most ``cfg.real_cap`` each), resampled to 16 kHz."""

    def lang(speaker: str) -> str:
        return speaker.split(":", 1)[1]

    return recorded_utterances(
        _files(root), cfg, SOURCE, root, lambda spk, path: utterance_id(path, lang(spk), root), lang
    )
