"""A small deterministic random sentence generator for the TTS sources (no external corpora).

Sentences come from hand-written templates filled from hand-written word lists. An utterance is
one sentence of 4-15 words, or (sometimes) two or three such sentences, so that synthesized
durations range from about 1.5 s to about 8 s.
"""

from __future__ import annotations

import random
import re

NAMES = (
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elena",
    "Frank",
    "Grace",
    "Henry",
    "Iris",
    "James",
    "Karen",
    "Leo",
    "Maria",
    "Nathan",
    "Olivia",
    "Peter",
    "Rosa",
    "Sam",
    "Tina",
    "Victor",
    "Wendy",
    "Yusuf",
)
NOUNS = (
    "report",
    "meeting",
    "budget",
    "window",
    "garden",
    "printer",
    "letter",
    "kitchen",
    "project",
    "schedule",
    "camera",
    "bicycle",
    "contract",
    "river",
    "station",
    "problem",
    "answer",
    "ticket",
    "market",
    "picture",
    "engine",
    "message",
    "basket",
    "concert",
    "doctor",
    "teacher",
    "village",
    "computer",
    "coffee",
    "number",
    "system",
    "morning",
    "question",
    "customer",
    "painting",
    "package",
    "hospital",
    "library",
    "mountain",
    "airport",
    "weekend",
    "document",
    "lesson",
)
PLURALS = (
    "apples",
    "boxes",
    "chairs",
    "emails",
    "files",
    "houses",
    "keys",
    "lamps",
    "maps",
    "notes",
    "orders",
    "papers",
    "photos",
    "plans",
    "samples",
    "shoes",
    "songs",
    "tables",
    "tools",
    "trains",
)
ADJECTIVES = (
    "small",
    "large",
    "old",
    "new",
    "quiet",
    "noisy",
    "bright",
    "dark",
    "careful",
    "strange",
    "simple",
    "heavy",
    "empty",
    "final",
    "yellow",
    "green",
    "broken",
    "famous",
    "early",
    "late",
    "important",
    "difficult",
    "pleasant",
    "expensive",
    "cheap",
    "modern",
    "wooden",
    "narrow",
)
VERBS_PAST = (
    "fixed",
    "opened",
    "moved",
    "cleaned",
    "checked",
    "painted",
    "found",
    "sold",
    "bought",
    "lost",
    "carried",
    "visited",
    "finished",
    "signed",
    "changed",
    "ordered",
    "watched",
    "described",
)
VERBS_BASE = (
    "fix",
    "open",
    "move",
    "clean",
    "check",
    "paint",
    "find",
    "sell",
    "buy",
    "carry",
    "visit",
    "finish",
    "sign",
    "change",
    "order",
    "watch",
    "describe",
    "read",
    "call",
    "bring",
)
ADVERBS = (
    "quickly",
    "slowly",
    "carefully",
    "quietly",
    "finally",
    "suddenly",
    "usually",
    "probably",
    "certainly",
    "again",
    "already",
    "easily",
)
PLACES = (
    "office",
    "station",
    "park",
    "school",
    "hotel",
    "harbour",
    "bridge",
    "museum",
    "corner shop",
    "bank",
    "city centre",
    "main road",
    "old factory",
    "university",
)
TIMES = (
    "today",
    "tomorrow",
    "yesterday",
    "on Monday",
    "on Friday",
    "next week",
    "last night",
    "this afternoon",
    "in the morning",
    "after lunch",
    "before dinner",
    "at noon",
    "in March",
)
PREPOSITIONS = ("near", "behind", "inside", "next to", "outside", "across from", "in front of")
NUMBERS = (
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "twelve",
    "fifteen",
    "twenty",
    "thirty",
    "forty",
    "a hundred",
)
FILLERS = ("Well,", "So,", "Okay,", "Actually,", "Honestly,", "Right,", "You know,", "Look,")

TEMPLATES = (
    "The {adj} {noun} is {prep} the {place}.",
    "{name} {past} the {noun} {time}.",
    "{name} {past} the {adj} {noun} {adv}.",
    "We {past} {num} {plural} {prep} the {place} {time}.",
    "Did you {base} the {noun} {time}?",
    "Could you please {base} the {adj} {noun}?",
    "I think the {noun} was {adv} {adj}.",
    "{filler} the {noun} {prep} the {place} looks {adj}.",
    "Please {base} {num} {plural} before {time_short}.",
    "Nobody {past} the {noun} at the {place}.",
    "{name} and {name2} {past} the {noun} {prep} the {place}.",
    "Why is the {noun} so {adj} {time}?",
    "The {noun} at the {place} {adv} {past} our {plural}.",
    "{filler} I will {base} the {noun} {time}.",
    "There are {num} {adj} {plural} in the {place}.",
    "{name} told me the {noun} was {adj}, but the {noun2} was {adj2}.",
    "Where did {name} {base} the {adj} {plural}?",
    "My {noun} is {adj}.",
    "Let us {base} it {time}.",
    "{filler} that {noun} is {adj}.",
    "After the {noun}, {name} {adv} {past} the {adj} {plural} {prep} the {place}.",
)
TIMES_SHORT = ("noon", "Monday", "Friday", "lunch", "dinner", "tomorrow", "the weekend")

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_CHOICES: dict[str, tuple[str, ...]] = {
    "name": NAMES,
    "name2": NAMES,
    "noun": NOUNS,
    "noun2": NOUNS,
    "plural": PLURALS,
    "adj": ADJECTIVES,
    "adj2": ADJECTIVES,
    "past": VERBS_PAST,
    "base": VERBS_BASE,
    "adv": ADVERBS,
    "place": PLACES,
    "time": TIMES,
    "time_short": TIMES_SHORT,
    "prep": PREPOSITIONS,
    "num": NUMBERS,
    "filler": FILLERS,
}


def _fill(template: str, rng: random.Random) -> str:
    """Replace every ``{slot}`` of ``template`` with a random word of that slot's list."""
    text = _PLACEHOLDER.sub(lambda m: rng.choice(_CHOICES[m.group(1)]), template)
    return text[0].upper() + text[1:]


def word_count(text: str) -> int:
    """Number of whitespace-separated words."""
    return len(text.split())


def sentence(rng: random.Random, min_words: int = 4, max_words: int = 15) -> str:
    """One random sentence with ``min_words`` to ``max_words`` words."""
    for _ in range(100):
        text = _fill(rng.choice(TEMPLATES), rng)
        if min_words <= word_count(text) <= max_words:
            return text
    raise RuntimeError("no template fits the word-count range")  # pragma: no cover


def utterance_text(rng: random.Random, multi_sentence_prob: float = 0.3, max_words: int = 24) -> str:
    """A random utterance: one sentence, or with ``multi_sentence_prob`` two or three sentences.

    The total stays at or under ``max_words`` words so that synthesized speech lasts at most ~8 s.
    """
    parts = [sentence(rng)]
    if rng.random() < multi_sentence_prob:
        for _ in range(rng.choice((1, 1, 2))):
            extra = sentence(rng, 4, 10)
            if word_count(" ".join([*parts, extra])) > max_words:
                break
            parts.append(extra)
    return " ".join(parts)
