"""Deterministic per-namespace speaker split: no leaks, parents and children together, sizes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from pipelines.inventory import Speaker
from pipelines.splits import assign_splits, namespace_of, pseudo_speaker_id, split_sizes


def make_speakers(counts: dict[str, int], cents: tuple[int, ...] = (-500, 500)) -> list[Speaker]:
    """``counts[namespace]`` real speakers per namespace, each with pitch-shifted children."""
    out = []
    for ns, n in counts.items():
        for i in range(n):
            parent = f"{ns}:s{i:03d}"
            out.append(Speaker(parent, ns, "train"))
            out.extend(Speaker(pseudo_speaker_id(parent, c), ns, "train", parent=parent) for c in cents)
    return out


COUNTS = {"espeak": 40, "libri": 251, "tts": 5, "asterisk": 6, "fillets-cs": 27, "fillets-nl": 2}


def test_every_speaker_gets_exactly_one_known_split() -> None:
    speakers = make_speakers(COUNTS)
    splits = assign_splits(speakers, {"dev": 0.1, "test": 0.1}, seed=1234)
    assert set(splits) == {s.speaker for s in speakers}
    assert set(splits.values()) == {"train", "dev", "test"}


def test_children_follow_their_parent() -> None:
    speakers = make_speakers(COUNTS)
    splits = assign_splits(speakers, seed=5)
    for spk in speakers:
        if spk.parent:
            assert splits[spk.speaker] == splits[spk.parent]


def test_children_follow_parent_given_plain_ids() -> None:
    ids = [s.speaker for s in make_speakers({"espeak": 30})]
    splits = assign_splits(ids, seed=5)
    for sid in ids:
        assert splits[sid] == splits[sid.split("@")[0]]


def test_sizes_per_namespace() -> None:
    speakers = make_speakers(COUNTS)
    splits = assign_splits(speakers, {"dev": 0.1, "test": 0.1}, seed=1234)
    per_ns: dict[str, Counter[str]] = defaultdict(Counter)
    for spk in speakers:
        if not spk.parent:
            per_ns[namespace_of(spk.speaker)][splits[spk.speaker]] += 1
    assert per_ns["libri"] == Counter(train=201, dev=25, test=25)
    assert per_ns["espeak"] == Counter(train=32, dev=4, test=4)
    assert per_ns["tts"] == Counter(train=3, dev=1, test=1)
    assert per_ns["asterisk"] == Counter(train=4, dev=1, test=1)
    assert per_ns["fillets-nl"] == Counter(train=2)  # fewer than 3 speakers: all train


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, {"train": 0, "dev": 0, "test": 0}),
        (2, {"train": 2, "dev": 0, "test": 0}),
        (3, {"train": 1, "dev": 1, "test": 1}),
        (10, {"train": 8, "dev": 1, "test": 1}),
        (251, {"train": 201, "dev": 25, "test": 25}),
    ],
)
def test_split_sizes(n: int, expected: dict[str, int]) -> None:
    assert split_sizes(n, {"dev": 0.1, "test": 0.1}) == expected


def test_large_fractions_keep_one_for_training() -> None:
    sizes = split_sizes(4, {"dev": 0.5, "test": 0.5})
    assert sizes["train"] >= 1 and sum(sizes.values()) == 4


def test_deterministic_and_order_independent() -> None:
    speakers = make_speakers(COUNTS)
    first = assign_splits(speakers, seed=42)
    shuffled = speakers[:]
    random.Random(0).shuffle(shuffled)
    assert assign_splits(shuffled, seed=42) == first
    assert assign_splits(speakers, seed=43) != first


def test_stable_across_processes() -> None:
    """hashlib, not hash(): a fresh interpreter with another PYTHONHASHSEED gives the same split."""
    code = (
        "import json; from pipelines.splits import assign_splits; "
        "print(json.dumps(assign_splits([f'libri:{i}' for i in range(50)], seed=7)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == assign_splits([f"libri:{i}" for i in range(50)], seed=7)


def test_same_person_groups_share_a_split() -> None:
    speakers = make_speakers({"asterisk": 6}, cents=())
    groups = {"asterisk:s001": "asterisk:s000"}
    for seed in range(20):
        splits = assign_splits(speakers, seed=seed, groups=groups)
        assert splits["asterisk:s001"] == splits["asterisk:s000"]


def test_adding_other_namespaces_does_not_change_a_namespace() -> None:
    a = assign_splits(make_speakers({"espeak": 40}), seed=1)
    b = assign_splits(make_speakers(COUNTS), seed=1)
    assert all(b[k] == v for k, v in a.items())
