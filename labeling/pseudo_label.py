"""``flywheel pseudo-label``: run the teacher over logged audio that has no pseudo-label yet.

For every successful logged request (``predictions``, status ``ok``) whose audio is in the audio
store and which has no row in ``pseudo_labels`` yet, the teacher (``get_system("teacher")``) labels
the audio and the run stores, per request:

* ``<out_dir>/<request_id>.rttm`` (default ``data/pseudo-labels/``; the URI is the request id), and
* a ``pseudo_labels`` row: the teacher's segments, its confidence (below), and the disagreement with
  what was served: the DER of the served segments (hypothesis) against the pseudo-label (reference),
  over the whole recording, overlap scored, no collar, with its components in seconds.

Confidence (all in [0, 1]):

* ``segmentation_confidence``: over every chunk frame of the local segmentation that is not clear
  silence (some local speaker has an activity probability of at least 0.1), the mean of
  ``prod_s max(p_s, 1 - p_s)`` over the 3 local speakers ``s``: the probability of the activity
  pattern the teacher decided on, were the speakers independent. 1 when every frame is decided.
* ``clustering_confidence``: the share of the teacher's dense CAM++ windows that are clearly closer
  to the centroid of their own speaker (the cluster the teacher's clustering gave the window,
  ``SpeakerAssignment.window_labels`` from its ``assign``; for a teacher without them, the speaker
  the pseudo-label gives most of the window's span) than to any other speaker's: cosine margin at
  least ``CLUSTER_MARGIN`` (0.1). With one speaker there is nothing to confuse it with and every
  window counts as clear (a wrongly merged pair of voices is not seen by this number); no windows: 1.
* ``confidence = segmentation_confidence * clustering_confidence``: what the review queue ranks by.

Idempotent and resumable: results are committed per audio file as they come in, the RTTM first
(atomically), then the row; a request with a row is never labelled again, so a second run does
nothing and a run killed half-way resumes where it stopped. The same audio logged by several
requests is labelled once (within a run, and across runs by the same teacher version).

It runs as Ray tasks (one ``ray.remote`` task per audio file, each worker keeping its teacher
loaded), on an embedded loopback Ray or on the cluster at ``RAY_ADDRESS``; ``local=True`` runs the
same function in this process without Ray. Only the driver touches the database and the files; the
tasks get the audio bytes, so cluster workers need the project installed, not the audio store.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.config import REPO_ROOT
from labeling.pseudo_db import LogItem, delete_failed, insert_rows, labelled_by_sha, pending_items

log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = REPO_ROOT / "data" / "pseudo-labels"
SILENCE_P = 0.1  # frames where no local speaker reaches this are clear silence (not scored)
CLUSTER_MARGIN = 0.1  # cosine margin of a window over the nearest other speaker's centroid


# ---------------------------------------------------------------- confidence


def segmentation_confidence(local: Any) -> float:
    """Mean ``prod_s max(p_s, 1 - p_s)`` over the non-silent chunk frames (module docstring)."""
    probs = getattr(local, "probabilities", None)
    if probs is None:
        return 1.0
    probs = np.asarray(probs, dtype=np.float32)  # (C, T, 3)
    frames = probs.shape[1]
    inside = (np.asarray(local.chunk_frames)[:, None] + np.arange(frames)[None, :]) < local.num_frames
    decided = np.maximum(probs, 1.0 - probs).prod(axis=2)  # (C, T)
    speech = probs.max(axis=2) >= SILENCE_P
    mask = inside & speech
    return float(decided[mask].mean()) if mask.any() else 1.0


def window_speakers(
    local: Any, annotation: Any, frame_s: float, window_labels: np.ndarray | None = None
) -> list[Any]:
    """The speaker of each dense window: the teacher's own cluster label (``window_labels``, from
    its ``assign``) when it has them, else the speaker the pseudo-label gives most of the window's span
    (None: no speech there)."""
    spans = np.asarray(local.window_frames)
    if window_labels is not None and len(window_labels) == len(spans):
        return [int(x) if int(x) >= 0 else None for x in np.asarray(window_labels)]
    from pyannote.core import Segment

    out: list[Any] = []
    for a, b in spans:
        crop = annotation.crop(Segment(float(a) * frame_s, float(b) * frame_s))
        durations = {lab: crop.label_duration(lab) for lab in crop.labels()}
        out.append(max(durations, key=durations.__getitem__) if durations else None)
    return out


def clustering_confidence(
    local: Any, annotation: Any, frame_s: float, window_labels: np.ndarray | None = None
) -> float:
    """Share of dense windows clearly nearest their own speaker's centroid (module docstring);
    ``window_labels``: the teacher's own cluster of each window (``SpeakerAssignment.window_labels``)."""
    emb = getattr(local, "window_embeddings", None)
    spans = getattr(local, "window_frames", None)
    if emb is None or spans is None or len(emb) == 0:
        return 1.0
    labels = window_speakers(local, annotation, frame_s, window_labels)
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    names = sorted({labels[i] for i in keep}, key=str)
    if len(names) < 2:
        return 1.0
    unit = np.asarray(emb, dtype=np.float64)[keep]
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    own = np.array([names.index(labels[i]) for i in keep])
    centroids = np.stack([unit[own == k].mean(axis=0) for k in range(len(names))])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    sims = unit @ centroids.T  # (W, K)
    own_sim = sims[np.arange(len(own)), own]
    sims[np.arange(len(own)), own] = -np.inf
    return float(np.mean(own_sim - sims.max(axis=1) >= CLUSTER_MARGIN))


# ---------------------------------------------------------------- the teacher, per audio file


def teacher_version(teacher: Any | None = None) -> str:
    """``teacher-<12 hex>``: a digest of the two teacher ONNX files (what the pseudo-labels depend on)."""
    from flywheel.pretrained import CAMPPLUS_ONNX, SEGMENTATION_ONNX

    seg = Path(getattr(teacher, "model_path", None) or SEGMENTATION_ONNX)
    digest = hashlib.sha256()
    for path in (seg, CAMPPLUS_ONNX):
        with open(path, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return f"teacher-{digest.hexdigest()[:12]}"


_TEACHER: dict[str, Any] = {}


def _teacher(threads: int = 1) -> tuple[Any, str]:
    """The teacher of this process (loaded once per worker) and its version."""
    if "system" not in _TEACHER:
        from flywheel.systems import get_system

        system = get_system("teacher", threads=threads)
        _TEACHER["system"] = system
        _TEACHER["version"] = teacher_version(system)
    return _TEACHER["system"], _TEACHER["version"]


@dataclass
class Job:
    """One audio file and the logged requests that served it."""

    audio_sha256: str
    audio: bytes | None  # the stored WAV (None: missing from the store)
    requests: list[LogItem] = field(default_factory=list)


def der_components(reference: Any, served: tuple, duration: float) -> dict[str, float]:
    """DER of the served turns against the pseudo-label over ``[0, duration]``, and its parts."""
    from pyannote.core import Segment, Timeline

    from flywheel.metrics import der_breakdown
    from flywheel.segments import annotation_from_turns

    hyp = annotation_from_turns(served, uri=reference.uri)
    b = der_breakdown(reference, hyp, uem=Timeline([Segment(0.0, max(duration, 1e-3))]))
    return {
        "disagreement": b.der,
        "reference_speech_s": b.total,
        "missed_s": b.missed,
        "false_alarm_s": b.false_alarm,
        "confusion_s": b.confusion,
    }


def label_job(job: Job, threads: int = 1) -> list[dict[str, Any]]:
    """Run the teacher over one audio file; one result row per request (no I/O besides decoding).

    Failures become ``error`` rows (the message kept) instead of exceptions, so one bad file never
    stops a run.
    """
    now = datetime.now(UTC)
    base = [
        {"request_id": r.request_id, "audio_sha256": job.audio_sha256, "created_at": now}
        for r in job.requests
    ]
    if job.audio is None:
        return [{**b, "status": "missing_audio", "error": "audio not in the store"} for b in base]
    try:
        from flywheel.audio import SAMPLE_RATE, load_audio
        from flywheel.segments import turns_of

        teacher, version = _teacher(threads)
        t0 = time.perf_counter()
        waveform = load_audio(job.audio, min_duration=0.0)
        local = teacher.prepare(waveform)
        assignment = teacher.assign(local, teacher.params.threshold)
        annotation = teacher.stitch(local, assignment, uri="teacher")
        elapsed = time.perf_counter() - t0
        seg_conf = segmentation_confidence(local)
        clus_conf = clustering_confidence(local, annotation, teacher.frame_s, assignment.window_labels)
        duration = len(waveform) / SAMPLE_RATE
        turns = [[round(s, 3), round(e, 3), spk] for s, e, spk in turns_of(annotation)]
        rows = []
        for b, request in zip(base, job.requests, strict=True):
            rows.append(
                {
                    **b,
                    "status": "ok",
                    "teacher_version": version,
                    "segments": turns,
                    "num_speakers": len(annotation.labels()),
                    "duration_s": duration,
                    "confidence": seg_conf * clus_conf,
                    "segmentation_confidence": seg_conf,
                    "clustering_confidence": clus_conf,
                    "teacher_s": elapsed,
                    **der_components(annotation, request.segments, duration),
                }
            )
        return rows
    except Exception as err:  # a broken file or a teacher failure: recorded, the run goes on
        log.warning("teacher failed on %s: %s", job.audio_sha256, err)
        return [{**b, "status": "error", "error": f"{type(err).__name__}: {err}"[:2000]} for b in base]


def reuse_rows(job: Job, done: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for requests whose audio this teacher version already labelled (no teacher run)."""
    from flywheel.segments import annotation_from_turns

    reference = annotation_from_turns([tuple(t) for t in done["segments"] or []], uri="teacher")
    now = datetime.now(UTC)
    keep = (
        "teacher_version",
        "segments",
        "num_speakers",
        "duration_s",
        "confidence",
        "segmentation_confidence",
        "clustering_confidence",
    )
    return [
        {
            "request_id": r.request_id,
            "audio_sha256": job.audio_sha256,
            "created_at": now,
            "status": "ok",
            "teacher_s": 0.0,
            **{k: done[k] for k in keep},
            **der_components(reference, r.segments, float(done["duration_s"] or 0.0)),
        }
        for r in job.requests
    ]


# ---------------------------------------------------------------- storage


def write_rttm_atomically(path: Path, request_id: str, turns: list) -> None:
    """``<request_id>.rttm`` written to a temporary name and renamed into place."""
    lines = [
        f"SPEAKER {request_id} 1 {float(s):.3f} {float(e) - float(s):.3f} <NA> <NA> {spk} <NA> <NA>\n"
        for s, e, spk in turns
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".rttm")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_rows(engine: Any, out_dir: Path, rows: list[dict[str, Any]]) -> int:
    """RTTM files first, then the rows (one transaction): a crash in between only redoes the item."""
    for row in rows:
        if row["status"] == "ok":
            path = out_dir / f"{row['request_id']}.rttm"
            write_rttm_atomically(path, row["request_id"], row["segments"])
            row["rttm_path"] = str(path)
    return insert_rows(engine, rows)


# ---------------------------------------------------------------- running


@dataclass
class PseudoLabelReport:
    """What one run did."""

    pending: int = 0  # requests without a pseudo-label when the run started (after --limit)
    labelled: int = 0  # ok rows written
    reused: int = 0  # of which from an earlier run's teacher output for the same audio
    failed: int = 0  # error rows
    missing_audio: int = 0
    teacher_runs: int = 0  # audio files the teacher ran over
    seconds: float = 0.0
    mode: str = "local"


def jobs_for(items: list[LogItem], audio_dir: Path) -> list[Job]:
    """Group requests by audio hash (the teacher runs once per audio), audio bytes read from the store."""
    from flywheel.audio_store import AudioStore

    store = AudioStore(audio_dir)
    groups: dict[str, list[LogItem]] = defaultdict(list)
    for item in items:
        groups[item.audio_sha256].append(item)
    jobs = []
    for sha, requests in groups.items():
        try:
            audio: bytes | None = store.read(sha)
        except (FileNotFoundError, ValueError):
            audio = None
        jobs.append(Job(sha, audio, requests))
    return jobs


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[str]:
    """Ray for the run: the one already initialised, the cluster at ``address`` / ``RAY_ADDRESS``, or an
    embedded loopback Ray (started here and shut down at the end). Yields a description."""
    import ray

    if ray.is_initialized():
        yield "ray (already initialised)"
        return
    from flywheel.ray_runtime import start_ray  # the project's one way to join or start Ray (loopback)

    address = address or os.environ.get("RAY_ADDRESS") or None
    start_ray(address=address, num_cpus=num_cpus)
    try:
        yield f"ray cluster {address}" if address else "embedded ray (127.0.0.1)"
    finally:
        ray.shutdown()


def _ray_results(jobs: list[Job], threads: int, max_in_flight: int | None) -> Iterator[list[dict]]:
    """Rows of each job as its Ray task finishes (at most ``max_in_flight`` tasks queued)."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=1)(label_job)
    limit = max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    queue = list(reversed(jobs))
    in_flight: dict[Any, Job] = {}
    while queue or in_flight:
        while queue and len(in_flight) < limit:
            job = queue.pop()
            in_flight[task.remote(job, threads)] = job
        done, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in done:
            job = in_flight.pop(ref)
            try:
                yield ray.get(ref)
            except Exception as err:  # the worker died (twice): error rows, the run goes on
                now = datetime.now(UTC)
                yield [
                    {
                        "request_id": r.request_id,
                        "audio_sha256": job.audio_sha256,
                        "created_at": now,
                        "status": "error",
                        "error": f"ray task failed: {err}"[:2000],
                    }
                    for r in job.requests
                ]


def run_pseudo_labels(
    database_url: str,
    audio_dir: Path,
    out_dir: Path = DEFAULT_OUT_DIR,
    since: datetime | None = None,
    limit: int | None = None,
    local: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    threads: int = 1,
    retry_errors: bool = False,
    max_in_flight: int | None = None,
    progress: bool = True,
    on_result: Callable[[list[dict[str, Any]]], None] | None = None,
) -> PseudoLabelReport:
    """Label every pending logged request (see the module docstring); returns what was done.

    ``on_result`` is called with each job's rows after they are stored (tests use it to stop a run
    half-way).
    """
    from tqdm import tqdm

    from flywheel.db.engine import make_engine
    from flywheel.db.migrate import upgrade

    t0 = time.monotonic()
    upgrade(database_url)  # the table exists whatever the database's age
    engine = make_engine(database_url)
    report = PseudoLabelReport(mode="local" if local else "ray")
    try:
        if retry_errors:
            delete_failed(engine)
        items = pending_items(engine, since=since, limit=limit)
        report.pending = len(items)
        if not items:
            report.seconds = time.monotonic() - t0
            return report
        jobs = jobs_for(items, Path(audio_dir))
        # the same audio already labelled by this teacher version: reuse, do not run it again
        version = teacher_version() if jobs else ""
        done = labelled_by_sha(engine, [j.audio_sha256 for j in jobs], version)
        bar = tqdm(total=len(items), unit="item", desc="pseudo-label", disable=not progress)

        def record(rows: list[dict[str, Any]], reused: bool = False) -> None:
            store_rows(engine, out_dir, rows)
            for row in rows:
                if row["status"] == "ok":
                    report.labelled += 1
                    report.reused += int(reused)
                elif row["status"] == "missing_audio":
                    report.missing_audio += 1
                else:
                    report.failed += 1
            bar.update(len(rows))
            if on_result is not None:
                on_result(rows)

        to_run = []
        for job in jobs:
            if job.audio_sha256 in done:
                record(reuse_rows(job, done[job.audio_sha256]), reused=True)
            elif job.audio is None:
                record(label_job(job))
            else:
                to_run.append(job)
        report.teacher_runs = len(to_run)
        if local:
            for job in to_run:
                record(label_job(job, threads))
        elif to_run:
            with ray_session(address, num_cpus) as where:
                report.mode = where
                for rows in _ray_results(to_run, threads, max_in_flight):
                    record(rows)
        bar.close()
    finally:
        engine.dispose()
    report.seconds = time.monotonic() - t0
    return report


def parse_since(value: str | None) -> datetime | None:
    """``2026-11-24`` or an ISO time (naive: UTC) -> an aware UTC datetime (None: no filter)."""
    if not value:
        return None
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
