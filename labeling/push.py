"""``flywheel label push``: review items -> Label Studio tasks with pre-annotations.

Creates (or reuses, by title) the review project, connects the local-files storage the audio clips
are served from, and imports one task per span of at most ``task_max_s`` seconds of each item, with
the item's segments as a prediction (model version + score). Idempotent: every task carries
``key = <item_id>@<offset_ms>`` in its data, and keys already in the project are never imported again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labeling.client import LabelStudioClient
from labeling.items import ReviewItem, TaskSpan, read_items, split_spans, task_key
from labeling.label_config import label_config, regions, speaker_mapping, speakers_in_config
from labeling.media import STORAGE_SUBDIR, clip_relpath, clip_url, write_clip
from labeling.settings import LabelingSettings

STORAGE_TITLE = "flywheel audio clips"
IMPORT_BATCH = 100


@dataclass
class PushReport:
    """What one push did."""

    project_id: int
    created: list[str] = field(default_factory=list)  # task keys imported now
    skipped: list[str] = field(default_factory=list)  # task keys already in the project
    items: int = 0  # items that got at least one new task


def ensure_project(client: LabelStudioClient, title: str, num_speakers: int) -> dict[str, Any]:
    """The project called ``title`` with at least ``num_speakers`` speaker labels (created or grown)."""
    project = client.find_project(title)
    if project is None:
        return client.create_project(
            title,
            label_config(num_speakers),
            description="Speaker turns proposed by the flywheel's models; fix, then Submit.",
            show_collab_predictions=True,  # predictions pre-fill the annotation
        )
    if speakers_in_config(project.get("label_config", "")) < num_speakers:
        project = client.update_project(project["id"], label_config=label_config(num_speakers))
    return project


def ensure_storage(client: LabelStudioClient, project_id: int, server_media_dir: str) -> None:
    """Connect ``<server media dir>/audio`` as the project's local-files storage (once)."""
    path = f"{server_media_dir.rstrip('/')}/{STORAGE_SUBDIR}"
    if not any(s.get("path", "").rstrip("/") == path for s in client.local_storages(project_id)):
        client.create_local_storage(project_id, path, STORAGE_TITLE)


def build_task(item: ReviewItem, span: TaskSpan, mapping: dict[str, str], clip: str) -> dict[str, Any]:
    """One Label Studio task: the clip, where it sits in the recording, and the prediction."""
    return {
        "data": {
            "audio": clip_url(clip),
            "title": f"{item.item_id}  {span.offset:.1f}-{span.end:.1f} s of {item.duration:.1f} s",
            "key": task_key(item.item_id, span),
            "item_id": item.item_id,
            "offset": span.offset,
            "duration": span.duration,
            "item_duration": item.duration,
            "source_audio": str(item.audio_path),
            "model_version": item.model_version,
            "score": item.score,
            "speakers": {label: speaker for speaker, label in mapping.items()},  # Speaker k -> model's name
        },
        "predictions": [{
            "model_version": item.model_version,
            "score": item.score,
            "result": regions(item.segments, span.offset, span.duration, mapping),
        }],
    }  # fmt: skip


def push_items(
    items: Sequence[ReviewItem],
    client: LabelStudioClient,
    settings: LabelingSettings | None = None,
    budget: int | None = None,
) -> PushReport:
    """Import ``items`` as tasks (at most ``budget`` items with new tasks); see the module docstring.

    Raises:
        labeling.client.LabelStudioError: the server is down, refuses the token or the import.
    """
    settings = settings or LabelingSettings()
    client.whoami()  # fail early and clearly on a wrong token
    mappings = {item.item_id: speaker_mapping(item.segments) for item in items}
    needed = max([settings.label_studio_speakers, *(len(m) for m in mappings.values())])
    project = ensure_project(client, settings.label_studio_project, needed)
    project_id = int(project["id"])
    (settings.media_dir / STORAGE_SUBDIR).mkdir(parents=True, exist_ok=True)  # the storage must exist
    ensure_storage(client, project_id, settings.server_media_dir)
    existing = keys_of(client.tasks(project_id))

    report = PushReport(project_id=project_id)
    pending: list[dict[str, Any]] = []
    for item in items:
        new = []
        for span in split_spans(item.duration, settings.label_studio_task_max_s):
            key = task_key(item.item_id, span)
            if key in existing:
                report.skipped.append(key)
                continue
            new.append((key, span))
        if not new:
            continue
        if budget is not None and report.items >= budget:
            break
        report.items += 1
        for key, span in new:
            rel = clip_relpath(item.item_id, span)
            write_clip(item.audio_path, span, settings.media_dir / rel)
            pending.append(build_task(item, span, mappings[item.item_id], rel))
            existing.add(key)
            report.created.append(key)
        if len(pending) >= IMPORT_BATCH:
            client.import_tasks(project_id, pending)
            pending = []
    if pending:
        client.import_tasks(project_id, pending)
    if report.created:
        # Label Studio pins the project to the first imported model version and then hides other
        # versions' predictions; an empty version shows every task its own prediction.
        client.update_project(project_id, model_version="")
    return report


def push_file(items_path: Path, client: LabelStudioClient, settings: LabelingSettings | None = None,
              budget: int | None = None) -> PushReport:  # fmt: skip
    """:func:`push_items` over a JSONL file of review items."""
    return push_items(read_items(items_path), client, settings, budget=budget)


def keys_of(tasks: Iterable[dict[str, Any]]) -> set[str]:
    """The idempotency keys of tasks listed by the API."""
    return {t["data"]["key"] for t in tasks if "key" in t.get("data", {})}
