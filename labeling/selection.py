"""Which pseudo-labelled requests a reviewer sees first: disagreement, low confidence, arm balance.

Every pseudo-label with status ``ok`` is a candidate. Its base score is::

    base = w_disagreement * min(disagreement, 1) + w_confidence * (1 - confidence)

(``disagreement``: DER of what was served against the teacher; ``confidence``: the teacher's, see
:mod:`labeling.pseudo_label`). Items are then picked greedily: at each step the candidate with the
highest ``base - w_arm_balance * picked[arm] / n_arms`` wins, where ``picked[arm]`` counts the items
already picked from the arm that served it. ``w_arm_balance = 0`` is a pure score order; a large value
alternates between arms (round robin, best first within each arm), so one arm's traffic cannot fill
the whole queue. Ties go to the older request (then the smaller request id): the order is
deterministic. Items shorter than ``min_duration_s`` are left out.

Rules come from ``params.yaml: review`` (:class:`SelectionRules`); the budget (items per push) is
``review.budget``, overridden by ``flywheel label push --from-pseudo-labels --budget N``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from labeling.items import ReviewItem


@dataclass(frozen=True)
class SelectionRules:
    """``params.yaml: review``."""

    budget: int = 20
    w_disagreement: float = 1.0
    w_confidence: float = 1.0
    w_arm_balance: float = 0.5
    min_duration_s: float = 1.0

    @classmethod
    def from_params(cls, params: dict | None = None) -> SelectionRules:
        """Rules from ``params.yaml: review`` (defaults where a key is missing)."""
        if params is None:
            from flywheel.config import load_params

            params = load_params()
        review = dict(params.get("review") or {})
        weights = dict(review.get("weights") or {})
        return cls(
            budget=int(review.get("budget", cls.budget)),
            w_disagreement=float(weights.get("disagreement", cls.w_disagreement)),
            w_confidence=float(weights.get("low_confidence", cls.w_confidence)),
            w_arm_balance=float(weights.get("arm_balance", cls.w_arm_balance)),
            min_duration_s=float(review.get("min_duration_s", cls.min_duration_s)),
        )


@dataclass(frozen=True)
class Candidate:
    """One pseudo-labelled request as the ranking sees it."""

    request_id: str
    arm: str | None
    disagreement: float
    confidence: float
    created_at: datetime | None = None
    duration_s: float = 0.0

    def base_score(self, rules: SelectionRules) -> float:
        """Disagreement (capped at 1) and low confidence, weighted."""
        d = self.disagreement if math.isfinite(self.disagreement) else 1.0
        c = self.confidence if math.isfinite(self.confidence) else 0.0
        return rules.w_disagreement * min(max(d, 0.0), 1.0) + rules.w_confidence * (1.0 - c)


def rank(candidates: Sequence[Candidate], rules: SelectionRules | None = None) -> list[Candidate]:
    """All candidates (long enough) in review order; see the module docstring."""
    rules = rules or SelectionRules()
    pool = [c for c in candidates if c.duration_s >= rules.min_duration_s]
    arms = max(1, len({c.arm for c in pool}))
    base = {c.request_id: c.base_score(rules) for c in pool}
    picked: Counter[str | None] = Counter()
    order: list[Candidate] = []
    remaining = sorted(pool, key=lambda c: (c.created_at or datetime.min, c.request_id))
    while remaining:

        def priority(c: Candidate) -> float:
            return base[c.request_id] - rules.w_arm_balance * picked[c.arm] / arms

        best = max(remaining, key=priority)  # first of equals: the older request
        remaining.remove(best)
        picked[best.arm] += 1
        order.append(best)
    return order


def select(
    candidates: Sequence[Candidate], rules: SelectionRules | None = None, budget: int | None = None
) -> list[Candidate]:
    """The first ``budget`` (default ``rules.budget``) of :func:`rank`."""
    rules = rules or SelectionRules()
    return rank(candidates, rules)[: budget if budget is not None else rules.budget]


def candidates_from_rows(rows: Sequence[dict[str, Any]]) -> list[Candidate]:
    """Candidates from :func:`labeling.pseudo_db.labelled_rows`."""
    return [
        Candidate(
            request_id=r["request_id"],
            arm=r.get("arm"),
            disagreement=float(r["disagreement"] if r.get("disagreement") is not None else math.nan),
            confidence=float(r["confidence"] if r.get("confidence") is not None else math.nan),
            created_at=r.get("served_at"),
            duration_s=float(r.get("duration_s") or 0.0),
        )
        for r in rows
    ]


def review_item(row: dict[str, Any], audio_dir: Path) -> ReviewItem:
    """A pseudo-label as a review item: the teacher's segments as pre-annotations, its version and
    confidence as model version and score, the request id as item id, the stored audio."""
    from flywheel.audio_store import AudioStore

    return ReviewItem(
        item_id=row["request_id"],
        audio_path=AudioStore(audio_dir).path_for(row["audio_sha256"]),
        duration=float(row["duration_s"]),
        segments=tuple((float(s), float(e), str(spk)) for s, e, spk in row["segments"] or []),
        model_version=str(row.get("teacher_version") or "teacher"),
        score=min(1.0, max(0.0, float(row.get("confidence") or 0.0))),
    )


def review_items_from_log(
    database_url: str,
    audio_dir: Path,
    rules: SelectionRules | None = None,
    since: datetime | None = None,
) -> list[ReviewItem]:
    """Every ``ok`` pseudo-label whose audio is still stored, as review items in review order.

    The whole ranked list is returned: ``push_items(items, budget=N)`` skips items already in the
    project and gives new tasks to the first ``N`` others, so a second push moves down the list.
    """
    from flywheel.db.engine import make_engine
    from labeling.pseudo_db import labelled_rows

    rules = rules or SelectionRules()
    engine = make_engine(database_url)
    try:
        rows = {r["request_id"]: r for r in labelled_rows(engine, since=since)}
    finally:
        engine.dispose()
    items = []
    for cand in rank(candidates_from_rows(list(rows.values())), rules):
        item = review_item(rows[cand.request_id], audio_dir)
        if item.audio_path.exists():
            items.append(item)
    return items
