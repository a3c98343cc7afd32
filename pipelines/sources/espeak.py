"""eSpeak NG voice variants as speakers (formant synthesis; hundreds of times real time).

Speaker = variant (``espeak:<variant>``); each utterance varies the English dialect and the
speaking rate, which changes pronunciation and tempo but not the voice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipelines.sources.base import (
    RawUtterance,
    SourceConfig,
    private_tmp,
    require_binary,
    rng_for,
    run_to_wav,
    safe_id,
    select_speakers,
)
from pipelines.sources.text import utterance_text

SOURCE = "espeak"
VARIANTS_DIR = Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v")
# ~40 distinct-sounding variants with their apparent gender. Left out: joke/robot/echo voices
# (Demonic, UniRobot, anikaRobot, croak, robosoft*, RicishayMax*, Tweaky), whispers (whisper,
# whisperf, caleb), test voices (fast), names with spaces (Mr serious) and near-duplicates of a
# kept variant (AnxiousAndy, Gene2, Henrique, Hugo, miguel, michel, iven2-4, steph2-3, edward2,
# linda, klatt2-6, m2, m4-m7, Michael, max, marcelo, robert, ...).
VARIANTS: dict[str, str] = {
    "Alicia": "f",
    "Andrea": "f",
    "Annie": "f",
    "anika": "f",
    "aunty": "f",
    "belinda": "f",
    "f1": "f",
    "f2": "f",
    "f3": "f",
    "f4": "f",
    "f5": "f",
    "grandma": "f",
    "steph": "f",
    "zac": "",
    "shelby": "f",
    "Alex": "m",
    "Andy": "m",
    "Denis": "m",
    "Diogo": "m",
    "Gene": "m",
    "Jacky": "m",
    "Lee": "m",
    "Marco": "m",
    "Mario": "m",
    "Mike": "m",
    "Nguyen": "m",
    "antonio": "m",
    "boris": "m",
    "david": "m",
    "ed": "m",
    "edward": "m",
    "grandpa": "m",
    "gustave": "m",
    "iven": "m",
    "klatt": "m",
    "m1": "m",
    "m3": "m",
    "m8": "m",
    "quincy": "m",
    "rob": "m",
    "travis": "m",
}
DIALECTS = ("en-us", "en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan")
SPEED_RANGE = (140, 190)  # words per minute


def available_variants() -> list[str]:
    """The curated variants that this eSpeak NG installation has."""
    if not VARIANTS_DIR.is_dir():
        return []
    return sorted(v for v in VARIANTS if (VARIANTS_DIR / v).exists())


def list_speakers(cfg: SourceConfig) -> list[str]:
    """Ids of the chosen speakers (``espeak:<variant>``), sorted."""
    require_binary("espeak-ng")
    return select_speakers([f"{SOURCE}:{v}" for v in available_variants()], cfg, SOURCE)


def iter_utterances(cfg: SourceConfig) -> Iterator[RawUtterance]:
    """Synthesize ``cfg.utterances_per_tts_speaker`` random sentences with each chosen variant."""
    speakers = list_speakers(cfg)
    with private_tmp(cfg, "espeak-") as tmp:
        for speaker in speakers:
            variant = speaker.split(":", 1)[1]
            for i in range(cfg.utterances_per_tts_speaker):
                rng = rng_for(cfg.seed, SOURCE, variant, i)
                text = utterance_text(rng)
                dialect = rng.choice(DIALECTS)
                speed = rng.randint(*SPEED_RANGE)
                wav = Path(tmp) / f"{safe_id(variant)}-{i}.wav"
                cmd = ["espeak-ng", "-v", f"{dialect}+{variant}", "-s", str(speed), "-w", str(wav), text]
                yield RawUtterance(
                    speaker=speaker,
                    utt_id=f"{SOURCE}-{safe_id(variant)}-{i:04d}",
                    source=SOURCE,
                    samples=run_to_wav(cmd, wav),
                    lang="en",
                    gender=VARIANTS[variant],
                    text=text,
                )
