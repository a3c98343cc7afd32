"""DER of a system at every clustering threshold of a grid, each file's model run done once.

Shared by the threshold tuning (:mod:`experiments.tune`) and the training loop's dev scoring
(:func:`training.train.dev_der`), so training does not depend on the tuning package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyannote.core import Annotation

from flywheel.audio import load_audio
from flywheel.metrics import aggregate, der_breakdown
from flywheel.testset import TestItem


def score_thresholds(
    system: Any,
    items: list[TestItem],
    thresholds: list[float],
    collar: float = 0.0,
    rebuild: Callable[[float], Any] | None = None,
) -> list[dict[str, float]]:
    """DER of ``system`` on ``items`` at every clustering threshold: one row per threshold.

    A :class:`flywheel.systems.ReclusterableSystem` runs its model once per file (``prepare``) and only
    re-clusters per threshold; any other system is rebuilt per threshold with ``rebuild(threshold)``.
    Rows hold ``threshold, der, missed, false_alarm, confusion, total`` (seconds, summed over files).
    """
    from flywheel.systems import ReclusterableSystem

    if not thresholds:
        raise ValueError("no thresholds to try")
    hypotheses: dict[float, list[Annotation]] = {t: [] for t in thresholds}
    for f in items:
        waveform = load_audio(f.audio_path)
        if isinstance(system, ReclusterableSystem):
            prepared = system.prepare(waveform)
            for t in thresholds:
                hypotheses[t].append(system.cluster(prepared, threshold=t, uri=f.uri))
        elif rebuild is not None:  # no cached split: rebuild the system for every threshold
            for t in thresholds:
                hypotheses[t].append(rebuild(t).diarize(waveform, uri=f.uri))
        else:
            raise TypeError(f"{type(system).__name__} cannot re-cluster and no `rebuild` was given")
    table = []
    for t in thresholds:
        scores = [
            der_breakdown(f.reference, h, f.uem, collar) for f, h in zip(items, hypotheses[t], strict=True)
        ]
        total = aggregate(scores)
        table.append(
            {
                "threshold": t,
                **{k: getattr(total, k) for k in ("der", "missed", "false_alarm", "confusion", "total")},
            }
        )
    return table
