"""Raw speech sources of the speaker inventory.

Each module exposes ``iter_utterances(cfg: SourceConfig) -> Iterator[RawUtterance]``:

* ``espeak``: eSpeak NG voice variants (``espeak:<variant>``), TTS
* ``flite``: CMU Flite voices (``tts:<voice>``), TTS
* ``festival``: Festival voices (``tts:<voice>``; kal and slt are the same ids as Flite's), TTS
* ``librispeech``: LibriSpeech read speech (``libri:<reader>``), real
* ``asterisk``: Asterisk IVR prompts (``asterisk:<folder>``), real, 8 kHz
* ``fillets``: Fish Fillets NG game dialogue (``fillets-<lang>:<font>``), real, acted
* ``tuxpaint``: Tux Paint stamp descriptions, one credited voice per language (``tuxpaint:<lang>``), real
* ``asterisk_prompts``: single-voice Asterisk prompt packages (``asterisk-prompt:<name>``), real, 8 kHz
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

from pipelines.sources import (
    asterisk,
    asterisk_prompts,
    espeak,
    festival,
    fillets,
    flite,
    librispeech,
    tuxpaint,
)
from pipelines.sources.base import RawUtterance, SourceConfig, SourceUnavailableError

# Registry, in priority order: a speaker id yielded by two sources (tts:kal, tts:slt) is
# attributed to the first of them in speakers.csv. Every module also has
# ``list_speakers(cfg) -> list[str]`` (the ids ``iter_utterances`` would yield, sorted).
SOURCES: dict[str, ModuleType] = {
    "espeak": espeak,
    "flite": flite,
    "festival": festival,
    "librispeech": librispeech,
    "asterisk": asterisk,
    "fillets": fillets,
    "tuxpaint": tuxpaint,
    "asterisk_prompts": asterisk_prompts,
}
# Sources whose speakers get pitch-shifted pseudo-speakers (clean wideband speech).
PITCH_SHIFT_SOURCES = frozenset({"espeak", "flite", "festival", "librispeech"})
# Speaker ids that may be one person: always put in the same split as the id they map to.
SAME_PERSON: dict[str, str] = {**asterisk.SAME_PERSON}


def _module(name: str) -> ModuleType:
    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; choose from {sorted(SOURCES)}")
    return SOURCES[name]


def iter_source(name: str, cfg: SourceConfig) -> Iterator[RawUtterance]:
    """Utterances of the source called ``name`` (a key of :data:`SOURCES`)."""
    return _module(name).iter_utterances(cfg)


def list_source_speakers(name: str, cfg: SourceConfig) -> list[str]:
    """Speaker ids that ``iter_source(name, cfg)`` would yield, sorted."""
    return _module(name).list_speakers(cfg)


__all__ = [
    "PITCH_SHIFT_SOURCES",
    "SAME_PERSON",
    "SOURCES",
    "RawUtterance",
    "SourceConfig",
    "SourceUnavailableError",
    "iter_source",
    "list_source_speakers",
]
