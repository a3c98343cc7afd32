"""Deterministic speaker split (train/dev/test), kept in code as the data rules require.

* Per namespace (the speaker id before ``:``: ``espeak``, ``libri``, ``tts``, ``asterisk``,
  ``fillets-cs``, ...), so every split gets some of each source that has at least
  :data:`MIN_SPEAKERS_TO_SPLIT` speakers; a smaller namespace goes entirely to train.
  (The namespace is the source except that Flite and Festival share ``tts`` because they share
  voices, and Fish Fillets is split per dub language.)
* Units are *persons*: a pitch-shifted pseudo-speaker (``parent@+500c``) and ids listed in
  ``groups`` (possibly the same person) always get the split of their root speaker.
* Order within a namespace: SHA-256 of ``"<seed>:<root id>"`` (stable across processes and
  machines, unlike ``hash()``); the first ``round(n * test)`` go to test, the next
  ``round(n * dev)`` to dev (at least one each), the rest to train.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping

from pipelines.inventory import Speaker

DEFAULT_FRACTIONS: dict[str, float] = {"dev": 0.1, "test": 0.1}
MIN_SPEAKERS_TO_SPLIT = 3
EVAL_SPLITS = ("test", "dev")  # filled in this order


def pseudo_speaker_id(parent: str, cents: int) -> str:
    """Id of the pitch-shifted pseudo-speaker of ``parent`` (e.g. ``espeak:m3@+500c``)."""
    return f"{parent}@{cents:+d}c"


def parent_of(speaker: str) -> str:
    """The real speaker behind a pitch-shifted pseudo-speaker id (itself for a real one)."""
    return speaker.split("@", 1)[0]


def namespace_of(speaker: str) -> str:
    """The part of a speaker id before ``:`` (its stratum)."""
    return speaker.split(":", 1)[0]


def stable_hash(text: str) -> str:
    """Hex SHA-256 of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _root(speaker: str, parents: Mapping[str, str], groups: Mapping[str, str]) -> str:
    """The person unit of ``speaker``: parent first, then a ``groups`` alias (followed to its end)."""
    root = parents.get(speaker) or parent_of(speaker)
    seen = {root}
    while root in groups and groups[root] not in seen:
        root = groups[root]
        seen.add(root)
    return root


def split_sizes(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """How many of ``n`` units go to each eval split (and train) for one namespace."""
    if n < MIN_SPEAKERS_TO_SPLIT:
        return {"train": n, "dev": 0, "test": 0}
    sizes = {
        s: max(1, round(n * float(fractions.get(s, 0.0)))) if fractions.get(s, 0.0) > 0 else 0
        for s in EVAL_SPLITS
    }
    while sum(sizes.values()) > n - 1:  # keep at least one unit for training
        largest = max(EVAL_SPLITS, key=lambda s: sizes[s])
        sizes[largest] -= 1
    return {"train": n - sum(sizes.values()), **sizes}


def assign_splits(
    speakers: Iterable[Speaker | str],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    groups: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Speaker id -> ``"train"``/``"dev"``/``"test"``, deterministic for a given seed and speaker set.

    Args:
        speakers: :class:`~pipelines.inventory.Speaker` records (their ``parent`` is used) or ids.
        fractions: share of each namespace's persons for ``dev`` and ``test`` (default 0.1 each).
        seed: changes the order (and so the assignment) within each namespace.
        groups: optional ``speaker -> speaker`` aliases of possibly the same person; an aliased
            speaker is not a unit of its own and follows its target's split.
    """
    fractions = DEFAULT_FRACTIONS if fractions is None else fractions
    groups = groups or {}
    ids: list[str] = []
    parents: dict[str, str] = {}
    for spk in speakers:
        if isinstance(spk, Speaker):
            ids.append(spk.speaker)
            if spk.parent:
                parents[spk.speaker] = spk.parent
        else:
            ids.append(spk)
    roots = {sid: _root(sid, parents, groups) for sid in ids}
    units: dict[str, set[str]] = defaultdict(set)
    for root in roots.values():
        units[namespace_of(root)].add(root)
    unit_split: dict[str, str] = {}
    for ns in sorted(units):
        ordered = sorted(units[ns], key=lambda r: (stable_hash(f"{seed}:{r}"), r))
        sizes = split_sizes(len(ordered), fractions)
        pos = 0
        for split in (*EVAL_SPLITS, "train"):
            for root in ordered[pos : pos + sizes[split]]:
                unit_split[root] = split
            pos += sizes[split]
    return {sid: unit_split[roots[sid]] for sid in ids}
