"""``flywheel label pull``: completed Label Studio reviews -> the reviewed dataset (RTTM + UEM).

Layout of the reviewed dataset folder (default ``data/reviewed/``)::

    rttm/<item_id>.rttm    reviewed speaker turns, times in the whole recording (task offsets applied)
    uem/<item_id>.uem      the reviewed span(s): the union of the item's reviewed tasks
    manifest.jsonl         one line per reviewed task: key, item id, task id, annotation id, offset,
                           duration, reviewer, reviewed_at, pulled_at, model version, source audio,
                           segments (the manifest is the source of truth the RTTM/UEM are rebuilt from)

Everything is read from Label Studio first; only then are files written, each to a temporary name
and renamed into place, the manifest last. So a server that is down or a wrong token raises a
:class:`~labeling.client.LabelStudioError` with nothing written, and a second pull with no new
reviews changes no byte. A task deleted in Label Studio keeps its pulled review.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyannote.core import Segment, Timeline

from flywheel.segments import annotation_from_turns, rttm_lines
from labeling.client import LabelStudioClient, LabelStudioError
from labeling.label_config import segments_from_result
from labeling.settings import LabelingSettings

MANIFEST = "manifest.jsonl"


@dataclass
class PullReport:
    """What one pull did."""

    out_dir: Path
    added: list[str] = field(default_factory=list)  # task keys reviewed for the first time
    updated: list[str] = field(default_factory=list)  # task keys whose review changed
    unchanged: int = 0
    files_written: list[Path] = field(default_factory=list)


def reviewed_tasks(client: LabelStudioClient, project_id: int) -> list[dict[str, Any]]:
    """Manifest records (without ``pulled_at``) of the project's tasks with a submitted annotation.

    The latest non-cancelled annotation of a task wins; tasks not created by push (no ``key``) are
    ignored.
    """
    users = client.users()
    records = []
    for task in client.export(project_id):
        data = task.get("data", {})
        if "key" not in data:
            continue
        submitted = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
        if not submitted:
            continue
        ann = max(submitted, key=lambda a: (a.get("updated_at") or "", a["id"]))
        offset, duration = float(data["offset"]), float(data["duration"])
        completed_by = ann.get("completed_by")
        if isinstance(completed_by, dict):
            reviewer = completed_by.get("email") or str(completed_by.get("id"))
        else:
            reviewer = users.get(completed_by, str(completed_by))
        records.append({
            "key": data["key"],
            "item_id": data["item_id"],
            "task_id": task["id"],
            "annotation_id": ann["id"],
            "offset": offset,
            "duration": duration,
            "reviewer": reviewer,
            "reviewed_at": ann.get("updated_at") or ann.get("created_at"),
            "model_version": data.get("model_version"),  # of the pre-annotation the reviewer started from
            "source_audio": data.get("source_audio"),
            "segments": [list(t) for t in segments_from_result(ann.get("result", []), offset, duration)],
        })  # fmt: skip
    return records


def read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Records of an existing reviewed dataset, by task key (empty when there is none)."""
    path = out_dir / MANIFEST
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["key"]: r for r in records}


def item_files(item_id: str, records: list[dict[str, Any]]) -> dict[str, str]:
    """RTTM and UEM text of one item from its reviewed tasks."""
    turns = [tuple(t) for r in records for t in r["segments"]]
    annotation = annotation_from_turns(turns, uri=item_id)  # type: ignore[arg-type]
    rttm = "".join(f"{line}\n" for line in rttm_lines(annotation, uri=item_id))
    spans = Timeline([Segment(r["offset"], r["offset"] + r["duration"]) for r in records]).support()
    uem = "".join(f"{item_id} 1 {s.start:.3f} {s.end:.3f}\n" for s in spans)
    return {f"rttm/{item_id}.rttm": rttm, f"uem/{item_id}.uem": uem}


def _write_atomically(out_dir: Path, files: dict[str, str]) -> list[Path]:
    """Write every changed file to a temporary name, then rename all into place (``files`` order)."""
    changed = {rel: text for rel, text in files.items() if not _same(out_dir / rel, text)}
    temps: list[tuple[Path, Path]] = []
    try:
        for rel, text in changed.items():
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text)
            temps.append((tmp, target))
        for tmp, target in temps:
            os.replace(tmp, target)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
    return [target for _, target in temps]


def _same(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except OSError:
        return False


def pull_reviews(
    client: LabelStudioClient,
    settings: LabelingSettings | None = None,
    out_dir: Path | None = None,
    now: datetime | None = None,
) -> PullReport:
    """Export completed reviews and merge them into the reviewed dataset (see the module docstring).

    Raises:
        labeling.client.LabelStudioError: server down, token refused, or no review project yet.
    """
    settings = settings or LabelingSettings()
    out_dir = Path(out_dir or settings.reviewed_dir)
    client.whoami()
    project = client.find_project(settings.label_studio_project)
    if project is None:
        raise LabelStudioError(
            f"no project {settings.label_studio_project!r} in Label Studio at {client.url}: "
            "push items first (`flywheel label push`)"
        )
    fresh = reviewed_tasks(client, int(project["id"]))
    # -- nothing is written above this line ----------------------------------------------------------
    pulled_at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    manifest = read_manifest(out_dir)
    report = PullReport(out_dir=out_dir)
    for record in fresh:
        old = manifest.get(record["key"])
        same = old is not None and all(old.get(k) == v for k, v in record.items())
        if same:
            report.unchanged += 1
            continue
        (report.updated if old is not None else report.added).append(record["key"])
        manifest[record["key"]] = {**record, "pulled_at": pulled_at}

    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in manifest.values():
        by_item[record["item_id"]].append(record)
    files: dict[str, str] = {}
    for item_id, records in sorted(by_item.items()):
        files.update(item_files(item_id, sorted(records, key=lambda r: r["offset"])))
    ordered = sorted(manifest.values(), key=lambda r: (r["item_id"], r["offset"]))
    files[MANIFEST] = "".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered)  # last: the commit
    report.files_written = _write_atomically(out_dir, files) if manifest else []  # changed files only
    return report
