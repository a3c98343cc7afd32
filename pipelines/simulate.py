"""Simulated multi-speaker conversations with exact reference labels.

A conversation is assembled from inventory utterances of 2-4 speakers of one split:

1. turns: each turn is a crop of one utterance (whole speech intervals, about ``turn_max_s`` at most);
   the next turn either starts after an exponential pause or overlaps the end of the previous turn;
   short back-channels land inside another speaker's turn.
2. acoustics: a per-speaker level, a per-speaker room (synthetic exponential-decay RIR, direct path at
   t=0 so labels stay aligned), additive coloured noise at 5-25 dB SNR, optional telephone band.
3. reference: the tight speech intervals of every placed crop (from the clean source), so silence
   inside a turn is never labelled as speech.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed and inventory give the
same audio and RTTM, which is how ``full`` training data is "stored" as seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft
from pyannote.core import Annotation, Segment, Timeline
from scipy.signal import fftconvolve

from flywheel.audio import SAMPLE_RATE, resample
from flywheel.segments import annotation_from_turns
from pipelines.inventory import Inventory, Utterance
from pipelines.voice_warp import variant_name, warp_formants


@dataclass
class SimulationConfig:
    """Conversation statistics; defaults mirror ``params.yaml: simulation``."""

    speakers: tuple[int, int] = (2, 4)
    duration_s: tuple[float, float] = (30.0, 120.0)
    overlap_turn_prob: float = 0.3
    overlap_s: tuple[float, float] = (0.3, 2.5)
    pause_mean_s: float = 0.5
    backchannel_prob: float = 0.1
    turn_max_s: float = 8.0
    level_db: tuple[float, float] = (-10.0, 0.0)
    snr_db: tuple[float, float] = (5.0, 25.0)
    reverb_prob: float = 0.5
    rt60_s: tuple[float, float] = (0.15, 0.6)
    bandlimit_prob: float = 0.2
    # training only (set by the train recipe, not params.yaml: simulation, so dev/test never change):
    # a speaker is replaced by its formant-warped copy (pipelines/voice_warp.py) with this probability
    formant_warps: tuple[float, ...] = ()
    formant_warp_prob: float = 0.0

    @classmethod
    def from_params(
        cls, sim: dict[str, Any], duration_s: tuple[float, float] | None = None
    ) -> SimulationConfig:
        """Build from the ``simulation`` section of params.yaml (lists become tuples)."""
        kwargs = {
            k: tuple(v) if isinstance(v, list) else v for k, v in sim.items() if k in cls.__dataclass_fields__
        }
        if duration_s is not None:
            kwargs["duration_s"] = tuple(duration_s)
        return cls(**kwargs)


@dataclass
class Conversation:
    """One simulated recording and its exact labels."""

    uri: str
    waveform: np.ndarray
    reference: Annotation
    uem: Timeline
    speakers: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.waveform) / SAMPLE_RATE


class AudioCache:
    """Loads inventory utterances once (optionally keeping them in memory for training)."""

    def __init__(self, inventory: Inventory, keep: bool = True):
        self.inventory = inventory
        self.keep = keep
        self._cache: dict[str, np.ndarray] = {}
        self._warped: dict[tuple[str, float], np.ndarray] = {}

    def __call__(self, utt: Utterance) -> np.ndarray:
        if utt.utt_id in self._cache:
            return self._cache[utt.utt_id]
        samples = utt.load(self.inventory.root)
        if self.keep:
            self._cache[utt.utt_id] = samples
        return samples

    def warped(self, utt: Utterance, alpha: float) -> np.ndarray:
        """The utterance with its formants shifted by ``alpha`` (cached like the original)."""
        key = (utt.utt_id, alpha)
        if key in self._warped:
            return self._warped[key]
        samples = warp_formants(self(utt), alpha)
        if self.keep:
            self._warped[key] = samples
        return samples


class _VoiceMap:
    """Audio of each conversation speaker: the inventory utterance, or its formant-warped copy."""

    def __init__(self, audio: AudioCache, alphas: dict[str, float]):
        self.audio = audio
        self.alphas = alphas  # inventory speaker -> warp factor (absent: as recorded)

    def __call__(self, utt: Utterance) -> np.ndarray:
        alpha = self.alphas.get(utt.speaker)
        return self.audio(utt) if alpha is None else self.audio.warped(utt, alpha)


def _warp_voices(
    seed: int, speakers: list[str], pool: dict[str, list[Utterance]], cfg: SimulationConfig
) -> tuple[list[str], dict[str, list[Utterance]], dict[str, float]]:
    """Replace some speakers by formant-warped copies (new speaker ids); own random stream, so the
    rest of the conversation is drawn exactly as without warping."""
    if not cfg.formant_warps or cfg.formant_warp_prob <= 0:
        return speakers, pool, {}
    rng = np.random.default_rng((seed, 1))
    names, utts, alphas = [], dict(pool), {}
    for spk in speakers:
        if rng.random() < cfg.formant_warp_prob:
            alpha = float(cfg.formant_warps[int(rng.integers(len(cfg.formant_warps)))])
            name = variant_name(spk, alpha)
            utts[name], alphas[spk] = pool[spk], alpha
            names.append(name)
        else:
            names.append(spk)
    return names, utts, alphas


def _root(speaker: str) -> str:
    """Pitch-shifted pseudo-speakers share a root with their parent (``spk@+500c`` -> ``spk``)."""
    return speaker.split("@", 1)[0]


def choose_speakers(rng: np.random.Generator, pool: list[str], count: int) -> list[str]:
    """Draw ``count`` speakers, never two versions (pitch-shifted or not) of one voice."""
    chosen: list[str] = []
    roots: set[str] = set()
    for idx in rng.permutation(len(pool)):
        spk = pool[idx]
        if _root(spk) not in roots:
            chosen.append(spk)
            roots.add(_root(spk))
        if len(chosen) == count:
            break
    return chosen


def crop_utterance(
    rng: np.random.Generator, utt: Utterance, max_len: float
) -> tuple[float, float, list[tuple[float, float]]]:
    """Pick a run of whole speech intervals no longer than ``max_len`` (at least one interval).

    Returns ``(crop_start, crop_end, speech)`` with speech intervals relative to ``crop_start``.
    """
    speech = utt.speech or [(0.0, utt.duration)]
    i = int(rng.integers(len(speech)))
    j = i
    while j + 1 < len(speech) and speech[j + 1][1] - speech[i][0] <= max_len:
        j += 1
    pad = 0.05
    start = max(0.0, speech[i][0] - pad if i == 0 else max(speech[i - 1][1], speech[i][0] - pad))
    end = min(utt.duration, speech[j][1] + pad)
    if j + 1 < len(speech):
        end = min(end, speech[j + 1][0])
    rel = [(s - start, e - start) for s, e in speech[i : j + 1]]
    return start, end, rel


def room_impulse_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Synthetic RIR: unit direct path at t=0, then exponentially decaying noise (-60 dB at rt60)."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # first reflections arrive after ~2 ms
    rir = 0.3 * tail / (np.sqrt(np.sum(tail**2)) + 1e-9)
    rir[0] = 1.0
    return rir.astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White to brown noise (spectral slope drawn per conversation), unit RMS."""
    alpha = rng.uniform(0.0, 2.0)
    size = scipy.fft.next_fast_len(n, real=True)  # an n with large prime factors makes the FFT crawl
    spectrum = rng.standard_normal(size // 2 + 1) + 1j * rng.standard_normal(size // 2 + 1)
    freqs = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    spectrum *= 1.0 / np.maximum(freqs, 20.0) ** (alpha / 2)
    noise = scipy.fft.irfft(spectrum, size)[:n]
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


@dataclass
class _Placed:
    speaker: str
    start: float  # in the conversation
    audio: np.ndarray
    speech: list[tuple[float, float]]  # relative to start

    @property
    def end(self) -> float:
        return self.start + len(self.audio) / SAMPLE_RATE

    @property
    def speech_end(self) -> float:
        return self.start + self.speech[-1][1]


def draw_turns(
    rng: np.random.Generator,
    speakers: list[str],
    utts: dict[str, list[Utterance]],
    audio: Callable[[Utterance], np.ndarray],
    cfg: SimulationConfig,
    target: float,
) -> list[_Placed]:
    """Turns of ``speakers`` until ``target`` seconds: crops of their utterances (``audio`` gives the
    samples), after an exponential pause or overlapping the previous turn, plus back-channels."""
    placed: list[_Placed] = []
    prev: _Placed | None = None
    cursor = float(rng.uniform(0.2, 1.0))
    while cursor < target:
        if prev is None or len(speakers) == 1:
            spk = speakers[int(rng.integers(len(speakers)))]
        elif rng.random() < 0.15:
            spk = prev.speaker  # same speaker resumes after a pause
        else:
            others = [s for s in speakers if s != prev.speaker]
            spk = others[int(rng.integers(len(others)))]
        utt = utts[spk][int(rng.integers(len(utts[spk])))]
        max_len = float(np.clip(rng.lognormal(np.log(3.0), 0.6), 0.8, cfg.turn_max_s))
        c0, c1, speech = crop_utterance(rng, utt, max_len)
        samples = audio(utt)[int(c0 * SAMPLE_RATE) : int(c1 * SAMPLE_RATE)]
        if prev is not None and spk != prev.speaker and rng.random() < cfg.overlap_turn_prob:
            prev_speech = sum(e - s for s, e in prev.speech)
            ov = min(rng.uniform(*cfg.overlap_s), 0.8 * prev_speech, 0.8 * speech[-1][1])
            start = prev.speech_end - ov - speech[0][0]
        else:
            pause = float(np.clip(rng.exponential(cfg.pause_mean_s), 0.05, 3.0))
            start = (prev.speech_end if prev else cursor) + pause - speech[0][0]
        turn = _Placed(spk, max(0.0, start), samples, speech)
        placed.append(turn)
        if len(speakers) > 1 and rng.random() < cfg.backchannel_prob and turn.end - turn.start > 2.0:
            other = [s for s in speakers if s != spk]
            bspk = other[int(rng.integers(len(other)))]
            butt = utts[bspk][int(rng.integers(len(utts[bspk])))]
            b0, b1, bspeech = crop_utterance(rng, butt, 1.0)
            bsamples = audio(butt)[int(b0 * SAMPLE_RATE) : int(b1 * SAMPLE_RATE)]
            bstart = turn.start + rng.uniform(0.3, max(0.31, turn.end - turn.start - 1.0))
            placed.append(_Placed(bspk, bstart, bsamples, bspeech))
        prev = turn
        cursor = max(p.speech_end for p in placed)
    return placed


def simulate_conversation(
    inventory: Inventory,
    split: str,
    seed: int,
    cfg: SimulationConfig | None = None,
    audio: AudioCache | None = None,
    uri: str | None = None,
) -> Conversation:
    """Simulate one conversation from the speakers of ``split``; deterministic in ``seed``."""
    cfg = cfg or SimulationConfig()
    audio = audio or AudioCache(inventory, keep=False)
    rng = np.random.default_rng(seed)
    pool = inventory.by_speaker(split)
    pool = {s: [u for u in us if u.speech] for s, us in pool.items()}
    pool = {s: us for s, us in pool.items() if us}
    if len(pool) < cfg.speakers[0]:
        raise ValueError(f"split {split!r} has {len(pool)} usable speakers; need {cfg.speakers[0]}")
    count = int(rng.integers(cfg.speakers[0], cfg.speakers[1] + 1))
    speakers = choose_speakers(rng, sorted(pool), min(count, len(pool)))
    target = float(rng.uniform(*cfg.duration_s))
    speakers, pool, alphas = _warp_voices(seed, speakers, pool, cfg)
    turns = draw_turns(rng, speakers, pool, _VoiceMap(audio, alphas), cfg, target)

    total = max(t.end for t in turns) + float(rng.uniform(0.2, 1.0))
    n = int(total * SAMPLE_RATE)
    tracks = {spk: np.zeros(n, dtype=np.float32) for spk in speakers}
    for t in turns:
        i0 = int(round(t.start * SAMPLE_RATE))
        seg = t.audio / (np.sqrt(np.mean(t.audio**2)) + 1e-9) * 0.05  # equal loudness...
        seg = seg * 10 ** (rng.uniform(-2.0, 2.0) / 20)  # ...plus a little per-turn variation
        tracks[t.speaker][i0 : i0 + len(seg)] += seg[: n - i0]
    mix = np.zeros(n, dtype=np.float32)
    for spk in speakers:
        track = tracks[spk] * 10 ** (rng.uniform(*cfg.level_db) / 20)
        if rng.random() < cfg.reverb_prob:
            track = fftconvolve(track, room_impulse_response(rng, rng.uniform(*cfg.rt60_s)))[:n]
        mix += track.astype(np.float32)
    speech_power = float(np.mean(mix**2)) or 1e-6
    snr = float(rng.uniform(*cfg.snr_db))
    mix += coloured_noise(rng, n) * np.sqrt(speech_power / 10 ** (snr / 10))
    bandlimited = bool(rng.random() < cfg.bandlimit_prob)
    if bandlimited:
        mix = resample(resample(mix, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)[:n]
    mix *= 10 ** (rng.uniform(-35.0, -15.0) / 20) / (np.sqrt(np.mean(mix**2)) + 1e-9)  # recording level
    mix = (mix * min(1.0, 0.95 / (float(np.max(np.abs(mix))) + 1e-9))).astype(np.float32)

    uri = uri or f"sim_{split}_{seed}"
    ref_turns = [(t.start + s, t.start + e, t.speaker) for t in turns for s, e in t.speech]
    reference = annotation_from_turns(ref_turns, uri=uri).support(collar=0.0)
    return Conversation(
        uri=uri,
        waveform=mix,
        reference=reference,
        uem=Timeline([Segment(0.0, total)], uri=uri),
        speakers=speakers,
        info={"seed": seed, "split": split, "snr_db": snr, "bandlimited": bandlimited},
    )
