"""Build the speaker inventory of one data profile (``params.yaml: profiles.<profile>.inventory``).

Every source yields single-speaker recordings; each one is labelled with tight speech intervals
(:mod:`pipelines.speech_activity`), trimmed to at most 0.1 s of silence at both ends,
loudness-normalized (speech RMS :data:`TARGET_SPEECH_DBFS`, peak <= :data:`PEAK_LIMIT`), and written
as 16-bit FLAC. Speakers of :data:`~pipelines.sources.PITCH_SHIFT_SOURCES` also get pitch-shifted
pseudo-speakers (``<parent>@+500c``). Finally every speaker gets a split (:mod:`pipelines.splits`).

Layout of ``out_dir``::

    audio/<source>/<speaker slug>/<utt_id>.flac
    utterances.jsonl   speakers.csv   splits.json   summary.json

Usage: ``python -m pipelines.build_inventory --profile smoke --out-dir data/inventory/smoke``
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import typer
from tqdm import tqdm

from flywheel.audio import SAMPLE_RATE
from flywheel.config import get_settings, load_params, profile_params
from pipelines.inventory import SPLITS, Inventory, Speaker, Utterance
from pipelines.sources import (
    PITCH_SHIFT_SOURCES,
    SAME_PERSON,
    SOURCES,
    SourceConfig,
    SourceUnavailableError,
    iter_source,
    list_source_speakers,
)
from pipelines.sources.base import safe_id
from pipelines.speech_activity import speech_duration, speech_intervals, trim_silence
from pipelines.splits import assign_splits, pseudo_speaker_id

log = logging.getLogger(__name__)

TARGET_SPEECH_DBFS = -23.0
PEAK_LIMIT = 10 ** (-1.0 / 20)  # -1 dBFS
MIN_SPEECH_S = 0.3
MAX_EDGE_SILENCE_S = 0.1
Intervals = list[tuple[float, float]]
_MARKERS = ("utterances.jsonl", "speakers.csv", "splits.json", "audio", ".building")


@dataclass(frozen=True)
class _Task:
    """One unit of pool work: one shard (here: one speaker) of one source."""

    source: str
    cfg: SourceConfig
    out_dir: Path
    pitch_cents: tuple[int, ...] = ()


@dataclass
class _TaskResult:
    utterances: list[Utterance] = field(default_factory=list)
    speakers: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> gender/lang/parent/source
    errors: list[str] = field(default_factory=list)
    dropped: int = 0  # utterances with too little detected speech


def speaker_slug(speaker: str) -> str:
    """Folder name of a speaker id: ``espeak:m3@+500c`` -> ``espeak_m3.p500c``."""
    return safe_id(speaker.replace("@+", ".p").replace("@-", ".m"))


def pitch_suffix(cents: int) -> str:
    """Utterance-id suffix of a pitch shift: ``+500`` -> ``.p500c``, ``-500`` -> ``.m500c``."""
    return f".{'p' if cents >= 0 else 'm'}{abs(cents)}c"


def normalize_level(samples: np.ndarray, intervals: Intervals, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Scale so the speech RMS is :data:`TARGET_SPEECH_DBFS`, but the peak at most :data:`PEAK_LIMIT`."""
    parts = [samples[round(s * sr) : round(e * sr)] for s, e in intervals]
    speech = np.concatenate(parts) if parts else samples
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) if speech.size else 0.0
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if rms <= 0.0 or peak <= 0.0:
        return samples.astype(np.float32)
    gain = min(10 ** (TARGET_SPEECH_DBFS / 20) / rms, PEAK_LIMIT / peak)
    return (samples * gain).astype(np.float32)


def prepare(samples: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, Intervals] | None:
    """Label, trim and normalize one recording; ``None`` when it holds too little speech."""
    intervals = speech_intervals(samples, sr)
    if speech_duration(intervals) < MIN_SPEECH_S:
        return None
    trimmed, intervals = trim_silence(samples, intervals, sr, max_edge_s=MAX_EDGE_SILENCE_S)
    return normalize_level(trimmed, intervals, sr), intervals


def pitch_shift(samples: np.ndarray, cents: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Shift the pitch by ``cents`` keeping the duration (``sox pitch``, WSOLA + resampling)."""
    cmd = ["sox", "-V1", "-t", "f32", "-r", str(sr), "-c", "1", "-", "-t", "f32", "-", "pitch", str(cents)]
    scaled = (0.5 * samples).astype("<f4")  # headroom: sox clips float samples at full scale
    out = subprocess.run(cmd, input=scaled.tobytes(), capture_output=True, check=True, timeout=300).stdout
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


def _write(
    out_dir: Path,
    source: str,
    speaker: str,
    utt_id: str,
    lang: str,
    samples: np.ndarray,
    intervals: Intervals,
) -> Utterance:
    rel = Path("audio") / source / speaker_slug(speaker) / f"{utt_id}.flac"
    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out_dir / rel), samples, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    return Utterance(
        utt_id=utt_id,
        speaker=speaker,
        source=source,
        path=rel.as_posix(),
        duration=round(len(samples) / SAMPLE_RATE, 4),
        speech=intervals,
        lang=lang,
    )


def _run_task(task: _Task) -> _TaskResult:
    """Worker: produce, label and write every utterance of one shard (and its pitch shifts)."""
    result = _TaskResult()
    try:
        for raw in iter_source(task.source, task.cfg):
            prepared = prepare(raw.samples)
            if prepared is None:
                result.dropped += 1
                continue
            samples, intervals = prepared
            result.utterances.append(
                _write(task.out_dir, task.source, raw.speaker, raw.utt_id, raw.lang, samples, intervals)
            )
            result.speakers.setdefault(raw.speaker, {"gender": raw.gender, "lang": raw.lang, "parent": ""})
            for cents in task.pitch_cents:
                child = pseudo_speaker_id(raw.speaker, cents)
                shifted = prepare(pitch_shift(samples, cents))
                if shifted is None:
                    result.dropped += 1
                    continue
                result.utterances.append(
                    _write(
                        task.out_dir, task.source, child, raw.utt_id + pitch_suffix(cents), raw.lang, *shifted
                    )
                )
                result.speakers.setdefault(child, {"gender": "", "lang": raw.lang, "parent": raw.speaker})
    except (subprocess.SubprocessError, OSError, RuntimeError, ValueError) as err:
        result.errors.append(f"{task.source} shard {task.cfg.shard}: {type(err).__name__}: {err}")
    return result


def _prepare_out_dir(out_dir: Path) -> None:
    """Delete a previous build in ``out_dir`` (refusing to delete a folder that is not one)."""
    if out_dir.exists():
        entries = list(out_dir.iterdir())
        if entries and not any((out_dir / m).exists() for m in _MARKERS):
            raise FileExistsError(
                f"{out_dir} is not empty and does not look like an inventory; not deleting it"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / ".building").touch()


def _tasks(
    sources: Iterable[str],
    base: SourceConfig,
    out_dir: Path,
    pitch_cents: tuple[int, ...],
    skip_missing: bool,
) -> Iterator[_Task]:
    """One task per speaker of every source (so the pool balances and the progress bar moves)."""
    for source in sources:
        try:
            n = len(list_source_speakers(source, base))
        except SourceUnavailableError as err:
            if not skip_missing:
                raise
            log.warning("skipping source %s: %s", source, err)
            continue
        cents = pitch_cents if source in PITCH_SHIFT_SOURCES else ()
        for i in range(n):
            yield _Task(source, replace(base, shard=(i, n)), out_dir, cents)


def _speaker_records(results: list[_TaskResult], utterances: list[Utterance]) -> list[Speaker]:
    """One :class:`Speaker` per id; a speaker yielded by two sources gets the first in registry order."""
    order = {name: i for i, name in enumerate(SOURCES)}
    sources: dict[str, str] = {}
    for utt in utterances:
        if utt.speaker not in sources or order[utt.source] < order[sources[utt.speaker]]:
            sources[utt.speaker] = utt.source
    info: dict[str, dict[str, str]] = {}
    for res in results:
        for spk, meta in res.speakers.items():
            info.setdefault(spk, meta)
    return [
        Speaker(
            speaker=spk,
            source=sources[spk],
            split="train",
            gender=info[spk]["gender"],
            lang=info[spk]["lang"],
            parent=info[spk]["parent"],
        )
        for spk in sorted(sources)
    ]


def summarize(inventory: Inventory) -> dict[str, Any]:
    """Speakers, utterances and hours per split, per source and per (source, split)."""
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    groups: dict[tuple[str, str], list[Utterance]] = defaultdict(list)
    for utt in inventory.utterances:
        for source in (utt.source, "all"):
            for split in (utt.split, "all"):
                groups[(source, split)].append(utt)
    for (source, split), utts in sorted(groups.items()):
        table[source][split] = {
            "speakers": len({u.speaker for u in utts}),
            "utterances": len(utts),
            "hours": round(sum(u.duration for u in utts) / 3600, 3),
            "speech_hours": round(sum(speech_duration(u.speech) for u in utts) / 3600, 3),
        }
    return {"per_source_split": dict(table), "per_split": inventory.summary()}


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table: one row per source, speakers/utterances/hours per split."""
    cols = [*SPLITS, "all"]
    head = f"{'source':<12}" + "".join(f"{c + ' spk/utt/h':>24}" for c in cols)
    lines = [head, "-" * len(head)]
    table = summary["per_source_split"]
    for source in [*sorted(s for s in table if s != "all"), "all"]:
        cells = []
        for split in cols:
            c = table[source].get(split, {"speakers": 0, "utterances": 0, "hours": 0.0})
            cells.append(f"{c['speakers']:>7d}/{c['utterances']:>7d}/{c['hours']:>7.2f}")
        lines.append(f"{source:<12}" + "".join(f"{cell:>24}" for cell in cells))
    return "\n".join(lines)


def build_inventory(
    profile: str,
    out_dir: Path,
    params: dict[str, Any] | None = None,
    workers: int = 2,
    skip_missing_sources: bool = False,
    progress: bool = True,
) -> Inventory:
    """Build the inventory of ``profile`` into ``out_dir`` (deleting a previous build there).

    Reads ``profiles.<profile>.inventory`` (``sources``, ``max_speakers_per_source``,
    ``utterances_per_tts_speaker``, ``pitch_shift_cents`` and optionally
    ``max_utterances_per_real_speaker``), the top-level ``seed`` and ``split`` fractions.

    Args:
        profile: data profile name (``smoke`` or ``full``).
        out_dir: inventory folder to (re)create.
        params: parsed params.yaml (default: read it).
        workers: processes in the pool (1: run in this process).
        skip_missing_sources: warn and skip a source whose package is missing instead of failing.
        progress: show a tqdm progress bar.
    """
    params = params if params is not None else load_params()
    inv_params = profile_params(profile, params)["inventory"]
    seed = int(params.get("seed", 0))
    fractions = {k: float(v) for k, v in (params.get("split") or {}).items()} or None
    out_dir = Path(out_dir)
    started = time.perf_counter()
    _prepare_out_dir(out_dir)
    work_dir = Path(tempfile.mkdtemp(prefix="inventory-"))
    base = SourceConfig(
        max_speakers=inv_params.get("max_speakers_per_source"),
        utterances_per_tts_speaker=int(inv_params.get("utterances_per_tts_speaker", 30)),
        max_utterances_per_real_speaker=inv_params.get("max_utterances_per_real_speaker"),
        seed=seed,
        shared_data_dir=get_settings().shared_data_dir,
        work_dir=work_dir,
    )
    pitch_cents = tuple(int(c) for c in inv_params.get("pitch_shift_cents") or ())
    try:
        tasks = list(_tasks(inv_params["sources"], base, out_dir, pitch_cents, skip_missing_sources))
        results = _run_all(tasks, workers, progress)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    errors = [e for r in results for e in r.errors]
    for err in errors:
        log.warning("%s", err)
    utterances = sorted((u for r in results for u in r.utterances), key=lambda u: u.utt_id)
    dupes = [k for k, v in Counter(u.utt_id for u in utterances).items() if v > 1]
    if dupes:
        raise RuntimeError(f"duplicate utterance ids: {dupes[:5]}")
    speakers = _speaker_records(results, utterances)
    splits = assign_splits(speakers, fractions, seed, groups=SAME_PERSON)
    for spk in speakers:
        spk.split = splits[spk.speaker]
    for utt in utterances:
        utt.split = splits[utt.speaker]
    inventory = Inventory(out_dir, utterances, speakers)
    inventory.save()
    log.info(
        "built %d utterances of %d speakers in %.1f s",
        len(utterances),
        len(speakers),
        time.perf_counter() - started,
    )
    (out_dir / "splits.json").write_text(json.dumps(dict(sorted(splits.items())), indent=1) + "\n")
    summary = summarize(inventory)
    summary.update(
        profile=profile, seed=seed, errors=errors, dropped_utterances=sum(r.dropped for r in results)
    )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / ".building").unlink()
    return inventory


def _run_all(tasks: list[_Task], workers: int, progress: bool) -> list[_TaskResult]:
    """Run ``tasks`` in a pool of ``workers`` processes (or in-process for ``workers <= 1``)."""
    bar = tqdm(total=len(tasks), desc="inventory", unit="speaker", disable=not progress)
    results: list[_TaskResult] = []
    n_utts = 0

    def collect(res: _TaskResult) -> None:
        nonlocal n_utts
        results.append(res)
        n_utts += len(res.utterances)
        bar.set_postfix(utterances=n_utts, errors=sum(len(r.errors) for r in results))
        bar.update()

    try:
        if workers <= 1:
            for task in tasks:
                collect(_run_task(task))
        else:
            with get_context("fork").Pool(workers) as pool:
                for res in pool.imap_unordered(_run_task, tasks, chunksize=1):
                    collect(res)
    finally:
        bar.close()
    return results


app = typer.Typer(add_completion=False, help="Build the speaker inventory of one data profile.")


@app.command()
def main(
    profile: str = typer.Option(
        "smoke", "--profile", "-p", help="Data profile of params.yaml (profiles.<name>): smoke or full."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", "-o", help="Output folder (deleted, rebuilt); default data/inventory/<profile>."
    ),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Worker processes (1 = no pool)."),
    params_file: Path | None = typer.Option(
        None, "--params", help="params.yaml to read (default: the project's)."
    ),
    skip_missing_sources: bool = typer.Option(
        False, "--skip-missing-sources", help="Warn and skip sources whose package is not installed."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Build the inventory, then print speakers/utterances/hours per source and split."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out = out_dir or get_settings().data_dir / "inventory" / profile
    started = time.perf_counter()
    inventory = build_inventory(
        profile,
        out,
        params=load_params(params_file),
        workers=workers,
        skip_missing_sources=skip_missing_sources,
        progress=progress,
    )
    summary = json.loads((inventory.root / "summary.json").read_text())
    typer.echo(format_summary(summary))
    typer.echo(
        f"dropped (too little speech): {summary['dropped_utterances']}; errors: {len(summary['errors'])}"
    )
    typer.echo(f"wrote {inventory.root} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    app()
