"""Real acted speech: Fish Fillets NG game dialogue (Czech and Dutch dubs, 22 kHz Ogg Vorbis).

The speaker of each line is the font its dialogue definition names:
``script/<level>/dialogs_<lang>.lua`` holds ``dialogId("<id>", "font_xxx", ...)`` and the
recording is ``sound/<level>/<lang>/<id>.ogg``. Speaker id = ``fillets-<lang>:<font>``; the two
fish (``font_big``, ``font_small``) have hundreds of lines, about 25 minor characters a few each.
Lines with no font or ``font_both`` (both fish at once) are skipped.
"""

from __future__ import annotations

import re
from collections import defaultdict
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

SOURCE = "fillets"
ROOT = Path("/usr/share/games/fillets-ng")
LANGS = ("cs", "nl")
MIN_DURATION_S = 0.5
SKIP_FONTS = frozenset({"", "font_both"})
_DIALOG = re.compile(r'dialogId\(\s*"([^"]+)"\s*,\s*"([^"]*)"')


@lru_cache(maxsize=4)
def dialog_lines(root: Path = ROOT, langs: tuple[str, ...] = LANGS) -> dict[str, list[Path]]:
    """Speaker id -> recordings (that exist and last >= :data:`MIN_DURATION_S`) of every line."""
    lines: dict[str, list[Path]] = defaultdict(list)
    seen: set[Path] = set()
    for lang in langs:
        for script in sorted((root / "script").glob(f"*/dialogs_{lang}.lua")):
            level = script.parent.name
            text = script.read_text(encoding="utf-8", errors="replace")
            for dialog_id, font in _DIALOG.findall(text):
                if font in SKIP_FONTS:
                    continue
                ogg = root / "sound" / level / lang / f"{dialog_id}.ogg"
                if ogg in seen or not ogg.exists():
                    continue
                seen.add(ogg)
                try:
                    info = sf.info(str(ogg))
                except (sf.LibsndfileError, RuntimeError):
                    continue
                if info.frames / max(info.samplerate, 1) >= MIN_DURATION_S:
                    lines[f"{SOURCE}-{lang}:{font}"].append(ogg)
    return dict(lines)


def _lines(root: Path) -> dict[str, list[Path]]:
    """:func:`dialog_lines`, raising :class:`SourceUnavailableError` when there are none."""
    lines = dialog_lines(root)
    if not lines:
        raise SourceUnavailableError(f"no Fish Fillets dialogue under {root} (fillets-ng-data-cs/-nl)")
    return lines


def list_speakers(cfg: SourceConfig, root: Path = ROOT) -> list[str]:
    """Ids of the chosen speakers (``fillets-<lang>:<font>``), sorted."""
    return select_speakers(_lines(root), cfg, SOURCE)


def iter_utterances(cfg: SourceConfig, root: Path = ROOT) -> Iterator[RawUtterance]:
    """The chosen speakers' lines (at most ``cfg.real_cap`` each), resampled to 16 kHz."""

    def lang(speaker: str) -> str:
        return speaker.split(":", 1)[0].removeprefix(f"{SOURCE}-")

    def utt_id(speaker: str, path: Path) -> str:
        return f"{SOURCE}-{lang(speaker)}-{safe_id(path.parent.parent.name)}-{safe_id(path.stem)}"

    return recorded_utterances(_lines(root), cfg, SOURCE, root, utt_id, lang)
