"""Who spoke when, as a figure (matplotlib, Agg backend: no display needed): the timeline the training
run logs for a dev file and the evaluation run logs for the first file of its set.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from pyannote.core import Annotation


def timeline_chart(reference: Annotation, hypothesis: Annotation, out_path: Path, title: str = "") -> Path:
    """Reference and hypothesis speaker turns of one file on a shared time axis."""
    rows = [(f"ref {label}", reference, label) for label in sorted(reference.labels())]
    rows += [(f"hyp {label}", hypothesis, label) for label in sorted(hypothesis.labels())]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.2))
    colors = plt.get_cmap("tab10")
    for i, (_, annotation, label) in enumerate(rows):
        spans = [(s.start, s.duration) for s in annotation.label_timeline(label)]
        is_ref = i < len(reference.labels())
        ax.broken_barh(spans, (i - 0.4, 0.8), color=colors(i % 10), alpha=0.9 if is_ref else 0.6)
    ax.set_yticks(range(len(rows)), [name for name, _, _ in rows], fontsize=7)
    ax.axhline(len(reference.labels()) - 0.5, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    ax.set_title(title or "reference (top) vs hypothesis (bottom)", fontsize=9)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
