"""Real non-speech backgrounds for training: the music and sound effects of Fish Fillets NG.

The training simulator adds coloured noise only; real rooms also have music, tonal sources and
sudden sounds, and a model that never heard them calls them speech (the Fast CNN's false alarm on the
real-voice sets was 26 %). ``fillets-ng-data`` (Debian, the game's data; the same package gives the
inventory its acted dialogue) carries 15 instrumental music tracks (24.5 min, 22 kHz Ogg) and a dozen
sound effects (bubbles, impacts) as recorded audio. They are mixed under the training conversations
of the distillation pool (``training/distill_pool.py``): continuous music at one SNR per window, and
a few sound effects at random times, louder. Nothing here is used by any evaluation set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import soundfile as sf

from flywheel.audio import SAMPLE_RATE, resample, to_mono

FILLETS_DIR = Path("/usr/share/games/fillets-ng")


@dataclass(frozen=True)
class BackgroundConfig:
    """How often and how loud the real backgrounds are mixed in (params.yaml ``distill_pool.background``)."""

    music_prob: float = 0.4
    music_snr_db: tuple[float, float] = (0.0, 20.0)
    effects_prob: float = 0.3
    effects_per_window: tuple[int, int] = (1, 4)
    effects_snr_db: tuple[float, float] = (-5.0, 10.0)


def background_files(root: Path = FILLETS_DIR) -> tuple[list[Path], list[Path]]:
    """``(music, effects)``: the game's music tracks and its language-independent sound effects
    (``sound/<level>/*.ogg``; spoken lines live in ``sound/<level>/<lang>/`` and are not taken)."""
    music = sorted((root / "music").glob("*.ogg"))
    effects = sorted(p for p in (root / "sound").glob("*/*.ogg") if p.is_file())
    return music, effects


def _load(path: Path) -> np.ndarray:
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return resample(to_mono(samples), rate, SAMPLE_RATE).astype(np.float32)


class NoiseBank:
    """The background recordings, decoded once (16 kHz mono), and how to mix them under speech.

    Raises:
        FileNotFoundError: the package is not installed (``flywheel data install-packages``).
    """

    def __init__(self, root: Path = FILLETS_DIR, cfg: BackgroundConfig = BackgroundConfig()):
        self.music_files, self.effect_files = background_files(root)
        if not self.music_files:
            raise FileNotFoundError(
                f"no music under {root / 'music'}: install fillets-ng-data (`flywheel data install-packages`)"
            )
        self.cfg = cfg

    @cached_property
    def music(self) -> list[np.ndarray]:
        return [m for m in (_load(p) for p in self.music_files) if len(m) > SAMPLE_RATE]

    @cached_property
    def effects(self) -> list[np.ndarray]:
        return [e for e in (_load(p) for p in self.effect_files) if len(e) > 0]

    def mix(self, rng: np.random.Generator, speech: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """``speech`` with (maybe) music and (maybe) sound effects added; returns the mix and what was
        added (``music_snr_db``, ``effects``) for the pool's provenance."""
        n = len(speech)
        power = float(np.mean(speech**2)) or 1e-6
        out = speech.astype(np.float32).copy()
        info: dict[str, float] = {}
        if self.music and rng.random() < self.cfg.music_prob:
            track = self.music[int(rng.integers(len(self.music)))]
            start = int(rng.integers(0, max(1, len(track) - n)))
            piece = np.resize(track[start:], n)  # loops a track shorter than the window
            snr = float(rng.uniform(*self.cfg.music_snr_db))
            out += _at_snr(piece, power, snr)
            info["music_snr_db"] = snr
        if self.effects and rng.random() < self.cfg.effects_prob:
            count = int(rng.integers(self.cfg.effects_per_window[0], self.cfg.effects_per_window[1] + 1))
            for _ in range(count):
                effect = self.effects[int(rng.integers(len(self.effects)))][:n]
                at = int(rng.integers(0, max(1, n - len(effect))))
                out[at : at + len(effect)] += _at_snr(
                    effect, power, float(rng.uniform(*self.cfg.effects_snr_db))
                )
            info["effects"] = count
        return out, info


def _at_snr(noise: np.ndarray, speech_power: float, snr_db: float) -> np.ndarray:
    scale = np.sqrt(speech_power / 10 ** (snr_db / 10) / (float(np.mean(noise**2)) + 1e-12))
    return (noise * scale).astype(np.float32)
