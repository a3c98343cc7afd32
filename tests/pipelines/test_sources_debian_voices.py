"""The real voices of issue 19: Tux Paint stamp descriptions and the single-voice Asterisk prompt packages.

Each test skips with an install hint when its Debian package is missing. Checked: speaker ids in the
source's own namespace, how many speakers and minutes, which files are left out (another person's
recordings, copies, links), the split by speaker (the new namespaces move no existing speaker), the
frozen real-voice yardstick, and a small inventory build through ``build_inventory``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from flywheel.config import load_params
from pipelines.build_inventory import build_inventory
from pipelines.build_real_sets import is_real_voice
from pipelines.inventory import Inventory
from pipelines.sources import SourceConfig, asterisk, asterisk_prompts, iter_source, tuxpaint
from pipelines.splits import assign_splits, namespace_of

HINT = "`bash pipelines/install_packages.sh` (or apt-get install {})"
needs_tuxpaint = pytest.mark.skipif(
    not tuxpaint.ROOT.is_dir(), reason=f"{tuxpaint.PACKAGE} missing: " + HINT.format(tuxpaint.PACKAGE)
)
PROMPT_PACKAGES = " ".join(v.package for v in asterisk_prompts.VOICES)
needs_prompts = pytest.mark.skipif(
    len(asterisk_prompts.prompt_files()) < len(asterisk_prompts.VOICES),
    reason=f"{PROMPT_PACKAGES} missing: " + HINT.format(PROMPT_PACKAGES),
)
MIN_MINUTES_PER_SPEAKER = 2.0
SMALL = SourceConfig(max_speakers=2, max_utterances_per_real_speaker=2, seed=1234)


def _minutes(paths: list[Path]) -> float:
    return sum(sf.info(str(p)).duration for p in paths) / 60


def _check_utterances(source: str, namespace: str, cfg: SourceConfig) -> None:
    utts = list(iter_source(source, cfg))
    assert len(utts) == 4  # two speakers, two utterances each
    assert {namespace_of(u.speaker) for u in utts} == {namespace}
    assert len({u.speaker for u in utts}) == 2 and len({u.utt_id for u in utts}) == 4
    for utt in utts:
        assert utt.source == source and utt.utt_id.startswith(namespace + "-")
        assert utt.samples.dtype == np.float32 and utt.samples.ndim == 1
        assert np.all(np.isfinite(utt.samples)) and np.max(np.abs(utt.samples)) > 1e-3
        assert 0.5 <= len(utt.samples) / 16_000 < 30


@needs_tuxpaint
def test_tuxpaint_one_credited_voice_per_language() -> None:
    files = tuxpaint.description_files(tuxpaint.ROOT)
    assert sorted(files) == [f"tuxpaint:{lang}" for lang in sorted(tuxpaint.VOICES)]
    assert tuxpaint.list_speakers(SourceConfig()) == sorted(files)
    for speaker, paths in files.items():
        lang = speaker.split(":", 1)[1]
        assert _minutes(paths) >= MIN_MINUTES_PER_SPEAKER, speaker
        assert all(p.name.endswith(f"_desc_{lang}.ogg") for p in paths)
        assert not any(p.relative_to(tuxpaint.ROOT).parts[0] == "symbols" for p in paths)


@needs_tuxpaint
def test_tuxpaint_keeps_no_copies() -> None:
    files = tuxpaint.description_files(tuxpaint.ROOT)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for paths in files.values() for p in paths]
    assert len(digests) == len(set(digests))  # no recording twice, within or across languages
    ids = [tuxpaint.utterance_id(p, s.split(":")[1]) for s, paths in files.items() for p in paths]
    assert len(ids) == len(set(ids))


@needs_tuxpaint
def test_tuxpaint_utterances() -> None:
    _check_utterances("tuxpaint", "tuxpaint", SMALL)


@needs_prompts
def test_asterisk_prompts_one_voice_per_package() -> None:
    files = asterisk_prompts.prompt_files()
    assert sorted(files) == sorted(f"asterisk-prompt:{v.name}" for v in asterisk_prompts.VOICES)
    owned = [set(asterisk_prompts.package_files(v.package)) for v in asterisk_prompts.VOICES]
    assert not owned[0] & owned[1]
    for voice, own in zip(asterisk_prompts.VOICES, owned, strict=True):
        paths = files[f"asterisk-prompt:{voice.name}"]
        assert set(paths) <= own and not any(p.is_symlink() for p in paths)
        assert sum(map(asterisk_prompts.gsm_duration, paths)) / 60 >= MIN_MINUTES_PER_SPEAKER
        assert min(map(asterisk_prompts.gsm_duration, paths)) >= asterisk_prompts.MIN_DURATION_S
    # the Asterisk source reads <lang>_<CC>_<f|m>_<Name> folders only: these packages add no speaker to it
    folders = {
        p.relative_to(asterisk.ROOT).parts[0]
        for own_files in owned
        for p in own_files
        if p.is_relative_to(asterisk.ROOT)
    }
    assert folders and not folders & set(asterisk.speaker_folders())


@needs_prompts
def test_asterisk_prompts_utterances() -> None:
    _check_utterances("asterisk_prompts", "asterisk-prompt", SMALL)
    gsm = asterisk_prompts.prompt_files()["asterisk-prompt:fr_Armelle"][0]
    samples = asterisk_prompts.load_gsm(gsm)
    assert len(samples) / 16_000 == pytest.approx(asterisk_prompts.gsm_duration(gsm), abs=0.01)


def test_new_namespaces_split_by_speaker_and_move_nobody() -> None:
    existing = [
        f"{ns}:s{i}" for ns, n in {"libri": 251, "asterisk": 6, "fillets-cs": 27}.items() for i in range(n)
    ]
    new = [f"tuxpaint:{lang}" for lang in tuxpaint.VOICES]
    new += [f"asterisk-prompt:{v.name}" for v in asterisk_prompts.VOICES]
    fractions = {"dev": 0.1, "test": 0.1}
    before = assign_splits(existing, fractions, seed=1234)
    after = assign_splits(existing + new, fractions, seed=1234)
    assert {s: after[s] for s in existing} == before
    per_ns = Counter((namespace_of(s), after[s]) for s in new)
    assert per_ns == Counter(
        {
            ("tuxpaint", "train"): 5,
            ("tuxpaint", "dev"): 1,
            ("tuxpaint", "test"): 1,
            ("asterisk-prompt", "train"): 2,
        }
    )


def test_real_sets_stay_frozen() -> None:
    """The yardstick's speakers do not change now: the new voices enter it when it is next versioned."""
    assert not is_real_voice("tuxpaint:ru") and not is_real_voice("asterisk-prompt:fr_Armelle")
    sources = load_params()["profiles"]["full"]["inventory"]["sources"]
    assert {"tuxpaint", "asterisk_prompts"} <= set(sources)


@pytest.mark.slow
@needs_tuxpaint
@needs_prompts
def test_inventory_builds_with_the_new_sources(tmp_path: Path) -> None:
    params = {
        "seed": 1234,
        "split": {"dev": 0.1, "test": 0.1},
        "profiles": {
            "voices": {
                "inventory": {
                    "sources": ["tuxpaint", "asterisk_prompts"],
                    "max_speakers_per_source": None,
                    "utterances_per_tts_speaker": 1,
                    "max_utterances_per_real_speaker": 2,
                    "pitch_shift_cents": [500],  # ignored: neither source is pitch-shifted
                }
            }
        },
    }
    inv = build_inventory("voices", tmp_path / "inv", params=params, workers=1, progress=False)
    loaded = Inventory.load(inv.root)
    n_speakers = len(tuxpaint.VOICES) + len(asterisk_prompts.VOICES)
    assert len(loaded.speakers) == n_speakers and len(loaded.utterances) == 2 * n_speakers
    assert {u.source for u in loaded.utterances} == {"tuxpaint", "asterisk_prompts"}
    assert not any("@" in s for s in loaded.speakers)
    splits = Counter((namespace_of(s), spk.split) for s, spk in loaded.speakers.items())
    assert splits[("tuxpaint", "dev")] == splits[("tuxpaint", "test")] == 1
    assert splits[("asterisk-prompt", "train")] == 2
    for utt in itertools.islice(loaded.utterances, 6):
        info = sf.info(str(inv.root / utt.path))
        assert info.samplerate == 16_000 and info.channels == 1 and utt.speech
        assert utt.split == loaded.speakers[utt.speaker].split
