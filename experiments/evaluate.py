"""Score a diarization system on an evaluation set: hypothesis RTTMs, DER report (JSON + table).

DER is computed with pyannote.metrics, overlap scored, at every requested collar (0 and 0.25 s by
default); missed detection, false alarm, confusion and speaker-count error per file and in total.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from flywheel.audio import SAMPLE_RATE, load_audio
from flywheel.metrics import aggregate, der_breakdown
from flywheel.segments import write_rttm
from flywheel.systems import DiarizationSystem, get_system
from flywheel.testset import iter_test_set

DEFAULT_COLLARS = (0.0, 0.25)


def evaluate_system(
    system: DiarizationSystem,
    test_set: str | Path,
    out_dir: str | Path | None = None,
    collars: tuple[float, ...] = DEFAULT_COLLARS,
    progress: bool = True,
) -> dict[str, Any]:
    """Diarize and score every file of ``test_set``; writes ``rttm/`` and ``report.json`` to ``out_dir``."""
    out = Path(out_dir) if out_dir else None
    items = list(iter_test_set(test_set))
    per_collar: dict[float, list] = {c: [] for c in collars}
    files = []
    audio_seconds = compute_seconds = 0.0
    for item in tqdm(items, desc=f"evaluate {system.name}", unit="file", disable=not progress):
        waveform = load_audio(item.audio_path)
        started = time.perf_counter()
        hypothesis = system.diarize(waveform, uri=item.uri)
        elapsed = time.perf_counter() - started
        duration = len(waveform) / SAMPLE_RATE
        audio_seconds += duration
        compute_seconds += elapsed
        if out:
            write_rttm(out / "rttm" / f"{item.uri}.rttm", hypothesis)
        row: dict[str, Any] = {"uri": item.uri, "duration": duration, "seconds": elapsed}
        for collar in collars:
            b = der_breakdown(item.reference, hypothesis, item.uem, collar=collar)
            per_collar[collar].append(b)
            row[f"collar_{collar:g}"] = b.as_dict()
        files.append(row)
    total = {}
    for collar in collars:
        agg = aggregate(per_collar[collar]).as_dict()
        agg["speaker_count_error"] = sum(b.speaker_count_error for b in per_collar[collar]) / max(
            1, len(items)
        )
        agg["exact_speaker_count"] = sum(b.speaker_count_error == 0 for b in per_collar[collar]) / max(
            1, len(items)
        )
        total[f"collar_{collar:g}"] = agg
    report = {
        "system": system.name,
        "test_set": str(test_set),
        "files": files,
        "total": total,
        "audio_seconds": audio_seconds,
        "compute_seconds": compute_seconds,
        "real_time_factor": compute_seconds / audio_seconds if audio_seconds else 0.0,
    }
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def evaluate(
    system_name: str,
    test_set: str | Path,
    out_dir: str | Path | None = None,
    collars: tuple[float, ...] = DEFAULT_COLLARS,
    **system_options: Any,
) -> dict[str, Any]:
    """:func:`evaluate_system` for a system given by name (see ``flywheel.systems``)."""
    return evaluate_system(get_system(system_name, **system_options), test_set, out_dir, collars)


def report_table(report: dict[str, Any], collar: float = 0.0) -> Table:
    """A rich table: one row per file plus the total, DER and components in percent."""
    key = f"collar_{collar:g}"
    table = Table(title=f"{report['system']} on {report['test_set']} (collar {collar:g} s, overlap scored)")
    for col in ("file", "DER %", "miss %", "FA %", "conf %", "ref spk", "hyp spk"):
        table.add_column(col, justify="left" if col == "file" else "right")

    def row(name: str, d: dict[str, Any], spk: tuple[str, str]) -> list[str]:
        return [
            name,
            f"{100 * d['der']:.2f}",
            f"{100 * d['missed_rate']:.2f}",
            f"{100 * d['false_alarm_rate']:.2f}",
            f"{100 * d['confusion_rate']:.2f}",
            *spk,
        ]

    for f in report["files"]:
        d = f[key]
        table.add_row(*row(f["uri"], d, (str(d["ref_speakers"]), str(d["hyp_speakers"]))))
    t = report["total"][key]
    table.add_row(*row("TOTAL", t, ("count err", f"{t['speaker_count_error']:.2f}")), style="bold")
    return table


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    """Print the per-collar tables and the real-time factor."""
    console = console or Console()
    for key in report["total"]:
        console.print(report_table(report, float(key.split("_", 1)[1])))
    console.print(
        f"real-time factor {report['real_time_factor']:.4f} "
        f"({report['compute_seconds']:.1f} s for {report['audio_seconds']:.1f} s of audio)"
    )
