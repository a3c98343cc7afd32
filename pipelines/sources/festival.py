"""Festival voices as speakers (one ``festival --batch`` process per voice).

kal_diphone is the same person as Flite's kal and cmu_us_slt_arctic_hts the same as Flite's slt:
they share the ``tts:`` speaker ids of :mod:`pipelines.sources.flite`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

from flywheel.audio import load_audio
from pipelines.sources.base import (
    RawUtterance,
    SourceConfig,
    private_tmp,
    require_binary,
    rng_for,
    select_speakers,
)
from pipelines.sources.text import utterance_text

SOURCE = "festival"
VOICE_DIRS = (Path("/usr/share/festival/voices"),)
# festival voice -> (speaker id, gender)
VOICES: dict[str, tuple[str, str]] = {
    "kal_diphone": ("tts:kal", "m"),
    "ked_diphone": ("tts:ked", "m"),
    "cmu_us_slt_arctic_hts": ("tts:slt", "f"),
}
STRETCH_RANGE = (0.85, 1.2)


def available_voices() -> list[str]:
    """The voices of :data:`VOICES` installed under Festival's voice folders."""
    found = {p.name for d in VOICE_DIRS if d.is_dir() for p in d.glob("*/*") if p.is_dir()}
    return sorted(v for v in VOICES if v in found)


def _scheme_string(text: str) -> str:
    """``text`` as a double-quoted Scheme string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _synthesize(voice: str, items: list[tuple[str, float, Path]], timeout: float) -> None:
    """Write one wav per ``(text, duration_stretch, path)`` with a single Festival process."""
    lines = [f"(voice_{voice})"]
    for text, stretch, wav in items:
        lines.append(f"(Parameter.set 'Duration_Stretch {stretch})")
        lines.append(
            f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "
            f"{_scheme_string(str(wav))} 'riff)"
        )
    script = wav.parent / f"{voice}.scm"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(
        ["festival", "--batch", str(script)],
        check=True,
        timeout=timeout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def list_speakers(cfg: SourceConfig) -> list[str]:
    """Ids of the chosen speakers (``tts:<voice>``), sorted."""
    require_binary("festival")
    return select_speakers([VOICES[v][0] for v in available_voices()], cfg, SOURCE)


def iter_utterances(cfg: SourceConfig) -> Iterator[RawUtterance]:
    """Synthesize ``cfg.utterances_per_tts_speaker`` random sentences with each chosen voice."""
    speakers = list_speakers(cfg)
    by_speaker = {VOICES[v][0]: v for v in VOICES}
    with private_tmp(cfg, "festival-") as tmp:
        for speaker in speakers:
            voice = by_speaker[speaker]
            name = speaker.split(":", 1)[1]
            items = []
            for i in range(cfg.utterances_per_tts_speaker):
                rng = rng_for(cfg.seed, SOURCE, speaker, i)
                text = utterance_text(rng)
                stretch = round(rng.uniform(*STRETCH_RANGE), 3)
                items.append((text, stretch, Path(tmp) / f"{name}-{i}.wav"))
            _synthesize(voice, items, timeout=60 + 10 * len(items))
            for i, (text, _, wav) in enumerate(items):
                yield RawUtterance(
                    speaker=speaker,
                    utt_id=f"{SOURCE}-{name}-{i:04d}",
                    source=SOURCE,
                    samples=load_audio(wav, min_duration=0.0),
                    lang="en",
                    gender=VOICES[voice][1],
                    text=text,
                )
                wav.unlink(missing_ok=True)
