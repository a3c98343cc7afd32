"""CMU Flite voices as speakers.

awb, rms and slt are trained on real CMU ARCTIC recordings; kal (= kal16, the same speaker) is a
diphone voice. Speaker ids use the shared ``tts:`` namespace so that the same person synthesized
by Flite and by Festival (kal, slt) is one speaker and can never be in two splits.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

from pipelines.sources.base import (
    RawUtterance,
    SourceConfig,
    private_tmp,
    require_binary,
    rng_for,
    run_to_wav,
    select_speakers,
)
from pipelines.sources.text import utterance_text

SOURCE = "flite"
# flite voice name -> (speaker id, gender). kal16 is kal at 16 kHz (same speaker: one id);
# awb_time is a limited-domain voice (it can only say the time) and is left out.
VOICES: dict[str, tuple[str, str]] = {
    "kal16": ("tts:kal", "m"),
    "awb": ("tts:awb", "m"),
    "rms": ("tts:rms", "m"),
    "slt": ("tts:slt", "f"),
}
STRETCH_RANGE = (0.85, 1.2)  # duration_stretch: speaking-rate variation per utterance


def available_voices() -> list[str]:
    """The voices of :data:`VOICES` that ``flite -lv`` lists."""
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    listed = set(out.replace("Voices available:", "").split())
    return sorted(v for v in VOICES if v in listed)


def list_speakers(cfg: SourceConfig) -> list[str]:
    """Ids of the chosen speakers (``tts:<voice>``), sorted."""
    require_binary("flite")
    return select_speakers([VOICES[v][0] for v in available_voices()], cfg, SOURCE)


def iter_utterances(cfg: SourceConfig) -> Iterator[RawUtterance]:
    """Synthesize ``cfg.utterances_per_tts_speaker`` random sentences with each chosen voice."""
    speakers = list_speakers(cfg)
    by_speaker = {VOICES[v][0]: v for v in VOICES}
    with private_tmp(cfg, "flite-") as tmp:
        for speaker in speakers:
            voice = by_speaker[speaker]
            name = speaker.split(":", 1)[1]
            for i in range(cfg.utterances_per_tts_speaker):
                rng = rng_for(cfg.seed, SOURCE, speaker, i)
                text = utterance_text(rng)
                stretch = round(rng.uniform(*STRETCH_RANGE), 3)
                wav = Path(tmp) / f"{name}-{i}.wav"
                cmd = [
                    "flite",
                    "-voice",
                    voice,
                    "--setf",
                    f"duration_stretch={stretch}",
                    "-t",
                    text,
                    "-o",
                    str(wav),
                ]
                yield RawUtterance(
                    speaker=speaker,
                    utt_id=f"{SOURCE}-{name}-{i:04d}",
                    source=SOURCE,
                    samples=run_to_wav(cmd, wav),
                    lang="en",
                    gender=VOICES[voice][1],
                    text=text,
                )
