"""The speaker inventory: single-speaker utterances with tight speech intervals and a split.

On disk (``data/inventory/<profile>/``)::

    audio/<source>/<speaker>/<utt_id>.flac   16 kHz mono, 16-bit
    utterances.jsonl                          one :class:`Utterance` per line
    speakers.csv                              speaker, source, gender, lang, split, parent, ...

Simulated conversations and on-the-fly training data are drawn from it, never from raw packages,
so the same seed gives the same conversation on any machine that built the same inventory.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

SPLITS = ("train", "dev", "test")


@dataclass
class Utterance:
    """One single-speaker recording in the inventory."""

    utt_id: str
    speaker: str
    source: str
    path: str  # relative to the inventory directory
    duration: float
    speech: list[tuple[float, float]] = field(default_factory=list)  # tight speech intervals (s)
    split: str = "train"
    lang: str = "en"

    def load(self, root: str | Path) -> np.ndarray:
        """Samples as 16 kHz mono float32."""
        samples, _ = sf.read(str(Path(root) / self.path), dtype="float32")
        return samples


@dataclass
class Speaker:
    """One voice: a real person, a TTS voice, or a pitch-shifted pseudo-speaker (``parent`` set)."""

    speaker: str
    source: str
    split: str
    gender: str = ""
    lang: str = "en"
    parent: str = ""


class Inventory:
    """Utterances and speakers of one built inventory directory."""

    def __init__(self, root: str | Path, utterances: list[Utterance], speakers: list[Speaker]):
        self.root = Path(root)
        self.utterances = utterances
        self.speakers = {s.speaker: s for s in speakers}

    @classmethod
    def load(cls, root: str | Path) -> Inventory:
        """Read ``utterances.jsonl`` and ``speakers.csv`` from ``root``."""
        root = Path(root)
        if not (root / "utterances.jsonl").exists():
            raise FileNotFoundError(f"no inventory at {root}: run `flywheel data inventory` first")
        utterances = []
        with open(root / "utterances.jsonl") as fh:
            for line in fh:
                row = json.loads(line)
                row["speech"] = [tuple(x) for x in row["speech"]]
                utterances.append(Utterance(**row))
        with open(root / "speakers.csv", newline="") as fh:
            speakers = [Speaker(**row) for row in csv.DictReader(fh)]
        return cls(root, utterances, speakers)

    def save(self) -> None:
        """Write ``utterances.jsonl`` and ``speakers.csv`` (audio files are written by the builder)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "utterances.jsonl", "w") as fh:
            for utt in sorted(self.utterances, key=lambda u: u.utt_id):
                fh.write(json.dumps(asdict(utt)) + "\n")
        with open(self.root / "speakers.csv", "w", newline="") as fh:
            names = list(Speaker.__dataclass_fields__)
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            for spk in sorted(self.speakers.values(), key=lambda s: s.speaker):
                writer.writerow(asdict(spk))

    def by_speaker(self, split: str | None = None) -> dict[str, list[Utterance]]:
        """Utterances grouped by speaker, optionally restricted to one split."""
        groups: dict[str, list[Utterance]] = defaultdict(list)
        for utt in self.utterances:
            if split is None or utt.split == split:
                groups[utt.speaker].append(utt)
        return dict(groups)

    def summary(self) -> dict[str, dict[str, float]]:
        """Speakers, utterances and hours per split."""
        out: dict[str, dict[str, float]] = {}
        for split in SPLITS:
            utts = [u for u in self.utterances if u.split == split]
            out[split] = {
                "speakers": len({u.speaker for u in utts}),
                "utterances": len(utts),
                "hours": sum(u.duration for u in utts) / 3600,
            }
        return out
