"""Training windows for fine-tuning segmentation-3.0 on exact labels (``training/segmentation_finetune.py``).

segmentation-3.0 was trained on meetings and broadcast annotated by people, who bridge the short
pauses inside a turn; on our tight references (``pipelines/speech_activity.py``: gaps over 0.2 s are
silence) about 19 % of non-speech in dev-real is called speech, and 38 % of two-speaker overlap is
heard as one speaker (docs/teacher.md). This pool gives it what it never saw: 10 s windows of new
simulated **train** conversations (the training simulator, its formant warps and real music / effect
backgrounds, as the distillation pool; none of the real sets' acoustics or speakers) and of labelled
real recordings (default the ami-debug **train** meetings, real far field, oversampled; the flywheel's
reviewed set ``data/reviewed-set`` has the same layout), each with its exact activity of up to
three local speakers on segmentation-3.0's own output frames (frame ``i`` centred on sample
``495 + 270 i``). Windows where a fourth speaker talks are skipped: their labels would call speech
silence.

A shard is ``audio.npy`` (int16, ``(N, 160000)``), ``labels.npy`` (uint8, ``(N, 589, 3)``) and
``info.json`` (written last: a shard without it is rebuilt). Runs in the serving environment::

    python -m training.segmentation_pool --hours 12 --out data/segmentation/pool
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import typer
from pyannote.core import Annotation, Timeline
from tqdm import tqdm

from flywheel.audio import SAMPLE_RATE
from flywheel.config import load_params
from pipelines.background_noise import BackgroundConfig, NoiseBank
from pipelines.build_conversations import conversation_seed
from pipelines.inventory import Inventory
from pipelines.simulate import AudioCache, SimulationConfig, simulate_conversation

WINDOW_SAMPLES = 160_000  # segmentation-3.0's 10 s chunk
MODEL_FRAMES = 589
FRAME_STEP = 270  # samples between output frames
FRAME_CENTRE = 495  # centre of output frame 0 (half the 991-sample receptive field)
MAX_SPEAKERS = 3
FIRST_CONVERSATION = 3_000_000  # train conversations no other pool or recipe drew (distillation: 1e6+)


def model_frame_centres(start_s: float) -> np.ndarray:
    """Times (s) of segmentation-3.0's output frame centres for a window starting at ``start_s``."""
    return start_s + (FRAME_CENTRE + FRAME_STEP * np.arange(MODEL_FRAMES)) / SAMPLE_RATE


def window_labels(reference: Annotation, start_s: float) -> np.ndarray | None:
    """``(589, 3)`` uint8 activity of the window's speakers (most talkative first) on the model's
    frames, or ``None`` when more than three speakers talk in it."""
    centres = model_frame_centres(start_s)
    end = start_s + WINDOW_SAMPLES / SAMPLE_RATE
    activity: dict[str, np.ndarray] = {}
    for seg, _, label in reference.itertracks(yield_label=True):
        if seg.end <= start_s or seg.start >= end:
            continue
        act = activity.setdefault(label, np.zeros(MODEL_FRAMES, dtype=bool))
        act |= (centres >= seg.start) & (centres < seg.end)
    active = [s for s in sorted(activity, key=lambda s: -activity[s].sum()) if activity[s].any()]
    if len(active) > MAX_SPEAKERS:
        return None
    labels = np.zeros((MODEL_FRAMES, MAX_SPEAKERS), dtype=np.uint8)
    for k, spk in enumerate(active):
        labels[:, k] = activity[spk]
    return labels


def recording_windows(
    waveform: np.ndarray,
    reference: Annotation,
    rng: np.random.Generator,
    uem: Timeline | None = None,
    bank: NoiseBank | None = None,
    hop_s: float = 10.0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(audio int16, labels)`` of the 10 s windows every ``hop_s`` from a random first offset, each
    inside ``uem`` (when given), with a real background mixed in when ``bank`` is given."""
    hop = int(hop_s * SAMPLE_RATE)
    first = int(rng.integers(0, max(1, min(hop, len(waveform) - WINDOW_SAMPLES + 1))))
    for a in range(first, len(waveform) - WINDOW_SAMPLES + 1, hop):
        start_s = a / SAMPLE_RATE
        if uem is not None and not any(
            s.start <= start_s and start_s + WINDOW_SAMPLES / SAMPLE_RATE <= s.end for s in uem
        ):
            continue
        labels = window_labels(reference, start_s)
        if labels is None:
            continue
        piece = waveform[a : a + WINDOW_SAMPLES].astype(np.float32)
        if bank is not None:
            piece = bank.mix(rng, piece)[0]
        piece = piece * min(1.0, 0.95 / (float(np.max(np.abs(piece))) + 1e-9))
        yield np.round(np.clip(piece, -1, 1) * 32767).astype(np.int16), labels


def labelled_windows(
    folders: list[Path], rng: np.random.Generator, hop_s: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The windows of every recording in ``folders`` (the evaluation-set layout of
    :mod:`flywheel.testset`: ``<uri>.wav|.rttm|.uem``; e.g. ami-debug train, or the flywheel's
    reviewed set ``data/reviewed-set``), inside their UEM, no background added."""
    from flywheel.audio import load_audio
    from flywheel.testset import iter_test_set

    out = []
    for folder in folders:
        for item in iter_test_set(folder):
            audio = load_audio(item.audio_path, min_duration=0.0, max_duration=24 * 3600.0)
            out.extend(recording_windows(audio, item.reference, rng, item.uem, hop_s=hop_s))
    return out


def write_shard(windows: list[tuple[np.ndarray, np.ndarray]], out_dir: Path, info: dict) -> dict:
    """Write one shard (arrays first, ``info.json`` last); returns the info."""
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "audio.npy", np.stack([w[0] for w in windows]))
    np.save(out_dir / "labels.npy", np.stack([w[1] for w in windows]))
    info = {"windows": len(windows), "hours": len(windows) * WINDOW_SAMPLES / SAMPLE_RATE / 3600, **info}
    (out_dir / "info.json").write_text(json.dumps(info, indent=2))
    return info


def build_pool(
    out: Path,
    hours: float,
    shards: int,
    data_dir: Path,
    profile: str = "full",
    recordings_hop_s: float = 2.5,
    seed: int | None = None,
    recordings: list[Path] | None = None,
) -> list[dict]:
    """Build the missing shards: simulated train conversations until each shard holds
    ``hours / shards`` hours, plus (in every shard) the windows of the labelled real ``recordings``
    every ``recordings_hop_s`` (default: ``<data_dir>/ami-debug/train`` when it exists)."""
    params = load_params()
    seed = params["seed"] if seed is None else seed
    inventory = Inventory.load(data_dir / "inventory" / profile)
    pool_cfg = params["distill_pool"][profile]
    sim = dataclasses.replace(
        SimulationConfig.from_params(
            params["simulation"], duration_s=params["profiles"][profile]["conversations"]["duration_s"]
        ),
        formant_warps=tuple(pool_cfg.get("formant_warps", (0.85, 0.92, 1.08, 1.17))),
        formant_warp_prob=pool_cfg.get("formant_warp_prob", 0.5),
    )
    bank = NoiseBank(cfg=BackgroundConfig())
    audio_cache = AudioCache(inventory, keep=True)
    per_shard = int(hours * 3600 / (WINDOW_SAMPLES / SAMPLE_RATE) / shards)
    if recordings is None:
        ami = data_dir / "ami-debug" / "train"
        recordings = [ami] if ami.is_dir() else []
    done, index = [], FIRST_CONVERSATION
    for shard in range(shards):
        target = out / f"shard-{shard:03d}"
        if (target / "info.json").exists():  # written whole: resume after it
            info = json.loads((target / "info.json").read_text())
            done.append(info)
            index = info["conversations"][1]
            continue
        rng = np.random.default_rng((seed, shard, 11))
        first = index
        windows: list[tuple[np.ndarray, np.ndarray]] = []
        with tqdm(total=per_shard, desc=target.name, unit="window") as bar:
            while len(windows) < per_shard:
                conv = simulate_conversation(
                    inventory, "train", conversation_seed(seed, "train", index), sim, audio_cache
                )
                index += 1
                got = list(recording_windows(conv.waveform, conv.reference, rng, bank=bank))
                windows.extend(got[: per_shard - len(windows)])
                bar.update(len(got))
        real = labelled_windows(recordings, rng, recordings_hop_s)
        info = {
            "conversations": [first, index],
            "recordings": [str(r) for r in recordings],
            "recording_windows": len(real),
            "profile": profile,
        }
        done.append(write_shard(windows + real, target, info))
    return done


def main(
    out: Path = typer.Option(Path("data/segmentation/pool"), help="Folder for the shards."),
    hours: float = typer.Option(12.0, help="Hours of simulated train windows in all shards."),
    shards: int = typer.Option(4, help="Number of shards (each written whole)."),
    data_dir: Path = typer.Option(Path("data"), help="Project data folder (inventory, ami-debug)."),
    recordings: list[Path] = typer.Option(
        None,
        help="Folders of labelled real recordings (wav + rttm + uem), repeatable; default: "
        "<data-dir>/ami-debug/train. The flywheel's reviewed set is data/reviewed-set.",
    ),
    recordings_hop_s: float = typer.Option(2.5, help="Hop between those recordings' windows (oversamples)."),
) -> None:
    """Build the segmentation fine-tuning pool (exact labels on segmentation-3.0's frames)."""
    for info in build_pool(
        out, hours, shards, data_dir, recordings_hop_s=recordings_hop_s, recordings=recordings or None
    ):
        typer.echo(json.dumps(info))


if __name__ == "__main__":
    typer.run(main)
