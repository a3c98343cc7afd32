"""Diarization error rate with pyannote.metrics: the one way every system is scored.

Overlap is always scored (``skip_overlap=False``); the collar is a parameter (0 and 0.25 s are
reported). Components are in seconds; rates are fractions of reference speech.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from pyannote.core import Annotation, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate


@dataclass
class DERBreakdown:
    """DER and its components for one file (or summed over many)."""

    der: float
    missed: float  # seconds
    false_alarm: float
    confusion: float
    total: float  # seconds of reference speech
    ref_speakers: int = 0
    hyp_speakers: int = 0

    @property
    def speaker_count_error(self) -> int:
        """``|#hypothesis speakers - #reference speakers|``."""
        return abs(self.hyp_speakers - self.ref_speakers)

    def summary(self) -> str:
        """One line: ``DER 21.27%  miss  7.68%  false alarm  3.00%  confusion 10.59%``."""
        r = self.as_dict()
        return (
            f"DER {100 * self.der:5.2f}%  miss {100 * r['missed_rate']:5.2f}%  "
            f"false alarm {100 * r['false_alarm_rate']:5.2f}%  confusion {100 * r['confusion_rate']:5.2f}%"
        )

    def as_dict(self) -> dict[str, float]:
        """Plain dict including rates per component and the speaker-count error."""
        out = asdict(self)
        denom = self.total or 1.0
        out.update(
            missed_rate=self.missed / denom,
            false_alarm_rate=self.false_alarm / denom,
            confusion_rate=self.confusion / denom,
            speaker_count_error=self.speaker_count_error,
        )
        return out


def der_breakdown(
    reference: Annotation,
    hypothesis: Annotation,
    uem: Timeline | None = None,
    collar: float = 0.0,
) -> DERBreakdown:
    """Score one file: optimal speaker mapping, overlap scored, ``collar`` seconds forgiven."""
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    if uem is None:
        extent = (
            reference.get_timeline().extent() | hypothesis.get_timeline().extent()
            if len(hypothesis)
            else reference.get_timeline().extent()
        )
        uem = Timeline([extent])
    c = metric.compute_components(reference, hypothesis, uem=uem)
    total = c["total"]
    errors = c["missed detection"] + c["false alarm"] + c["confusion"]
    if total > 0:
        der = errors / total
    else:  # no reference speech: any hypothesised speech is an error
        der = 0.0 if errors == 0 else 1.0
    return DERBreakdown(
        der=der,
        missed=c["missed detection"],
        false_alarm=c["false alarm"],
        confusion=c["confusion"],
        total=total,
        ref_speakers=len(reference.labels()),
        hyp_speakers=len(hypothesis.labels()),
    )


def aggregate(breakdowns: list[DERBreakdown]) -> DERBreakdown:
    """Corpus-level DER: components summed over files, then divided (not an average of ratios)."""
    missed = sum(b.missed for b in breakdowns)
    fa = sum(b.false_alarm for b in breakdowns)
    conf = sum(b.confusion for b in breakdowns)
    total = sum(b.total for b in breakdowns)
    return DERBreakdown(
        der=(missed + fa + conf) / total if total else 0.0,
        missed=missed,
        false_alarm=fa,
        confusion=conf,
        total=total,
        ref_speakers=sum(b.ref_speakers for b in breakdowns),
        hyp_speakers=sum(b.hyp_speakers for b in breakdowns),
    )


@dataclass
class PairedDifference:
    """Corpus DER of system B minus system A on the same files, with a bootstrap interval."""

    der_a: float
    der_b: float
    low: float  # lower bound of the interval on delta
    high: float  # upper bound
    confidence: float  # e.g. 0.95
    b_better_share: float  # share of resamples where B's DER is lower

    @property
    def delta(self) -> float:
        """``der_b - der_a``: negative when B is better."""
        return self.der_b - self.der_a

    def verdict(self) -> str:
        """``"B better"``, ``"B worse"`` or ``"no significant difference"`` at ``confidence``."""
        if self.high < 0:
            return "B better"
        if self.low > 0:
            return "B worse"
        return "no significant difference"


def paired_bootstrap(
    a: list[DERBreakdown],
    b: list[DERBreakdown],
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Is B's corpus DER really different from A's? Resample the files (pairs kept together).

    ``a[i]`` and ``b[i]`` must score the same file. Each resample draws as many files as there are,
    with replacement, and recomputes both corpus DERs from the drawn files' components (like
    :func:`aggregate`), so long files weigh more, as they do in the corpus DER. The interval is the
    percentile interval of the resampled differences: a dev-set gain whose interval contains 0 may
    not carry over to other recordings.

    Raises:
        ValueError: the lists are empty or of different lengths, or ``confidence`` is not in (0, 1).
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"need two equally long, non-empty lists of per-file scores ({len(a)} vs {len(b)})")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")

    def errors(rows: list[DERBreakdown]) -> np.ndarray:
        return np.array([r.missed + r.false_alarm + r.confusion for r in rows])

    err_a, err_b = errors(a), errors(b)
    total = np.array([r.total for r in a])
    picks = np.random.default_rng(seed).integers(0, len(a), size=(samples, len(a)))
    totals = np.maximum(total[picks].sum(axis=1), 1e-12)
    deltas = (err_b[picks].sum(axis=1) - err_a[picks].sum(axis=1)) / totals
    tail = (1 - confidence) / 2
    return PairedDifference(
        der_a=aggregate(a).der,
        der_b=aggregate(b).der,
        low=float(np.quantile(deltas, tail)),
        high=float(np.quantile(deltas, 1 - tail)),
        confidence=confidence,
        b_better_share=float(np.mean(deltas < 0)),
    )
