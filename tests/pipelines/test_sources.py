"""Every inventory source yields valid utterances when its Debian package (or data) is present."""

from __future__ import annotations

import itertools
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.sources import (
    SOURCES,
    SourceConfig,
    SourceUnavailableError,
    asterisk,
    asterisk_prompts,
    espeak,
    festival,
    fillets,
    flite,
    iter_source,
    librispeech,
    list_source_speakers,
    tuxpaint,
)
from pipelines.sources.base import cap_items, select_speakers
from pipelines.sources.text import utterance_text, word_count

SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def unavailable_reason(source: str, cfg: SourceConfig) -> str | None:
    """Why ``source`` cannot run here (None when it can)."""
    needs = {
        "espeak": (shutil.which("espeak-ng"), "espeak-ng is not installed", espeak.VARIANTS_DIR),
        "flite": (shutil.which("flite"), "flite is not installed", None),
        "festival": (shutil.which("festival"), "festival is not installed", festival.VOICE_DIRS[0]),
        "librispeech": (True, "", Path(cfg.shared_data_dir) / librispeech.FOLDER),
        "asterisk": (True, "", asterisk.ROOT),
        "fillets": (True, "", fillets.ROOT),
        "tuxpaint": (True, "", tuxpaint.ROOT),
        "asterisk_prompts": (
            bool(asterisk_prompts.prompt_files()),
            "asterisk-prompt-es-co / asterisk-prompt-fr-armelle are not installed",
            None,
        ),
    }
    ok, why, folder = needs[source]
    if not ok:
        return f"{why} (Debian package; see pipelines/install_packages.sh)"
    if folder is not None and not Path(folder).is_dir():
        return f"{folder} is missing (Debian package or shared data; see pipelines/install_packages.sh)"
    return None


@pytest.fixture
def cfg(tmp_path: Path) -> SourceConfig:
    return SourceConfig(
        max_speakers=1,
        utterances_per_tts_speaker=2,
        max_utterances_per_real_speaker=2,
        seed=1234,
        work_dir=tmp_path,
    )


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_source_yields_valid_utterance(source: str, cfg: SourceConfig) -> None:
    reason = unavailable_reason(source, cfg)
    if reason:
        pytest.skip(reason)
    try:
        utts = list(itertools.islice(iter_source(source, cfg), 2))
    except SourceUnavailableError as err:
        pytest.skip(str(err))
    assert utts, f"{source} yielded nothing"
    speakers = list_source_speakers(source, cfg)
    assert len(speakers) == 1
    for utt in utts:
        assert utt.source == source
        assert utt.speaker == speakers[0]
        assert ":" in utt.speaker and "@" not in utt.speaker
        assert SAFE_ID.match(utt.utt_id), utt.utt_id
        assert utt.gender in ("f", "m", "")
        assert utt.lang
        assert utt.samples.dtype == np.float32 and utt.samples.ndim == 1
        assert np.all(np.isfinite(utt.samples))
        assert 0.3 < len(utt.samples) / 16_000 < 60
        assert np.max(np.abs(utt.samples)) > 1e-3
    assert len({u.utt_id for u in utts}) == len(utts)


@pytest.mark.parametrize("source", ["espeak", "flite"])
def test_tts_is_deterministic(source: str, cfg: SourceConfig) -> None:
    reason = unavailable_reason(source, cfg)
    if reason:
        pytest.skip(reason)
    a = next(iter_source(source, cfg))
    b = next(iter_source(source, cfg))
    assert a.utt_id == b.utt_id and a.text == b.text
    np.testing.assert_array_equal(a.samples, b.samples)


def test_flite_and_festival_share_speaker_ids() -> None:
    flite_ids = {spk for spk, _ in flite.VOICES.values()}
    festival_ids = {spk for spk, _ in festival.VOICES.values()}
    assert {"tts:kal", "tts:slt"} <= flite_ids & festival_ids


def test_select_speakers_is_deterministic_and_shards_partition() -> None:
    names = [f"x:{i}" for i in range(50)]
    cfg = SourceConfig(max_speakers=12, seed=3)
    chosen = select_speakers(names, cfg, "x")
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    assert chosen == select_speakers(shuffled, cfg, "x") == sorted(chosen)
    assert len(chosen) == 12
    shards = [
        select_speakers(names, SourceConfig(max_speakers=12, seed=3, shard=(i, 5)), "x") for i in range(5)
    ]
    assert sorted(s for shard in shards for s in shard) == chosen
    assert select_speakers(names, SourceConfig(max_speakers=None), "x") == sorted(names)


def test_cap_items() -> None:
    items = [f"f{i}" for i in range(20)]
    assert cap_items(items, 30, 1) == sorted(items)
    capped = cap_items(items, 5, 1, "a")
    assert len(capped) == 5 and capped == cap_items(list(reversed(items)), 5, 1, "a")


def test_text_generator() -> None:
    texts = [utterance_text(random.Random(i)) for i in range(300)]
    assert texts == [utterance_text(random.Random(i)) for i in range(300)]
    counts = [word_count(t) for t in texts]
    assert min(counts) >= 4 and max(counts) <= 24
    assert sum(c > 15 for c in counts) > 10  # some multi-sentence utterances
    assert len(set(texts)) > 290
    assert all(t[0].isupper() and t[-1] in ".?" for t in texts)


def test_unknown_source() -> None:
    with pytest.raises(KeyError, match="unknown source"):
        iter_source("nope", SourceConfig())
