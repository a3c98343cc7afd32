"""Figures of the evaluations and benchmarks (matplotlib, Agg backend: no display needed).

* :func:`der_per_file_chart`: stacked bars (missed, false alarm, confusion) per file, logged with
  every evaluation run (next to the core's :func:`flywheel.plots.timeline_chart` of one file);
* :func:`paired_der_chart`, :func:`quality_by_duration_chart`: the benchmark figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def der_per_file_chart(report: dict[str, Any], out_path: Path, collar: float = 0.0) -> Path:
    """Bar chart of DER per file of an :func:`experiments.evaluate.evaluate_system` report."""
    key = f"collar_{collar:g}"
    files = report["files"]
    names = [f["uri"] for f in files]
    parts = {
        "missed": [100 * f[key]["missed_rate"] for f in files],
        "false alarm": [100 * f[key]["false_alarm_rate"] for f in files],
        "confusion": [100 * f[key]["confusion_rate"] for f in files],
    }
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(names) + 2), 4))
    bottom = [0.0] * len(names)
    for label, values in parts.items():
        ax.bar(names, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    total = 100 * report["total"][key]["der"]
    ax.axhline(total, color="black", linestyle="--", linewidth=1, label=f"total {total:.1f}%")
    ax.set_ylabel("DER (%)")
    ax.set_title(f"{report['system']}: DER per file (collar {collar:g} s, overlap scored)")
    ax.tick_params(axis="x", labelrotation=90, labelsize=6)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def paired_der_chart(
    der_a: list[float], der_b: list[float], out_path: Path, label_a: str = "A", label_b: str = "B"
) -> Path:
    """Scatter of per-file DER, A on x and B on y: points below the diagonal are files B does better."""
    a, b = [100 * v for v in der_a], [100 * v for v in der_b]
    top = max([*a, *b, 1.0]) * 1.05
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle="--")
    ax.scatter(a, b, s=14, alpha=0.7)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"DER % {label_a}", ylabel=f"DER % {label_b}")
    ax.set_title("per-file DER (below the line: B better)")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def quality_by_duration_chart(rows: list[dict[str, Any]], out_path: Path) -> Path:
    """Local-speaker embedding quality against solo speech (``benchmarks/embedding_quality.py`` rows):
    within-recording EER and nearest-centroid error, one point per bin at its centre."""
    centres = [sum(r["solo_s"]) / 2 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(centres, [100 * r["eer"] for r in rows], marker="o", label="EER (same vs other speaker)")
    ax.plot(
        centres,
        [100 * (1 - r["nearest_centroid_accuracy"]) for r in rows],
        marker="s",
        label="nearest true centroid is another speaker",
    )
    ax.set(xlabel="solo speech of the local speaker in its chunk (s)", ylabel="%", ylim=(0, None))
    ax.set_title("local-speaker embeddings: error against solo speech")
    ax.legend()
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
