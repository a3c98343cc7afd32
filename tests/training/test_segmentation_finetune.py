"""The segmentation-3.0 fine-tuning pool (exact labels on the model's frames) and its loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pyannote.core import Annotation, Segment, Timeline

from training.segmentation_finetune import CLASS_OF_CODE, MAPPING, PERMUTATIONS, powerset_loss
from training.segmentation_pool import (
    MODEL_FRAMES,
    WINDOW_SAMPLES,
    build_pool,
    model_frame_centres,
    recording_windows,
    window_labels,
)


def _reference(turns: list[tuple[float, float, str]]) -> Annotation:
    ann = Annotation(uri="x")
    for start, end, spk in turns:
        ann[Segment(start, end)] = spk
    return ann


def test_model_frames_are_centred_on_the_receptive_field() -> None:
    centres = model_frame_centres(2.0)
    assert len(centres) == MODEL_FRAMES
    assert centres[0] == pytest.approx(2.0 + 495 / 16000)
    assert np.diff(centres) == pytest.approx(np.full(MODEL_FRAMES - 1, 270 / 16000))


def test_window_labels_are_exact_and_ordered_by_talk_time() -> None:
    ref = _reference([(1.0, 2.0, "a"), (1.5, 6.0, "b"), (8.0, 8.2, "c")])
    labels = window_labels(ref, 0.0)
    assert labels is not None and labels.shape == (MODEL_FRAMES, 3)
    centres = model_frame_centres(0.0)
    # b talks most: slot 0; a: slot 1; c: slot 2
    np.testing.assert_array_equal(labels[:, 0], (centres >= 1.5) & (centres < 6.0))
    np.testing.assert_array_equal(labels[:, 1], (centres >= 1.0) & (centres < 2.0))
    assert labels[:, 2].sum() == int(((centres >= 8.0) & (centres < 8.2)).sum()) > 0
    # the window starting at 9 s sees nobody
    assert window_labels(ref, 9.0).sum() == 0


def test_a_window_with_four_speakers_is_skipped() -> None:
    ref = _reference([(0.0, 1.0, "a"), (2.0, 3.0, "b"), (4.0, 5.0, "c"), (6.0, 7.0, "d")])
    assert window_labels(ref, 0.0) is None
    assert window_labels(ref, 3.5) is not None  # c and d only (window 3.5-13.5 s)


def test_recording_windows_stay_inside_the_uem_and_are_int16() -> None:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(35 * 16000)).astype(np.float32)
    ref = _reference([(0.0, 35.0, "a")])
    uem = Timeline([Segment(5.0, 35.0)])
    windows = list(recording_windows(audio, ref, np.random.default_rng(1), uem=uem, hop_s=2.5))
    assert windows, "a 30 s UEM holds 10 s windows"
    for samples, labels in windows:
        assert samples.dtype == np.int16 and samples.shape == (WINDOW_SAMPLES,)
        assert labels[:, 0].all() and not labels[:, 1:].any()
    assert len(windows) <= int((30 - 10) / 2.5) + 1


def _confident(labels: torch.Tensor) -> torch.Tensor:
    """Powerset log-probabilities that put 0.999 on the class of ``labels``."""
    codes = (labels * torch.tensor([1.0, 2.0, 4.0])).sum(-1).long()
    classes = CLASS_OF_CODE[codes].clamp(min=0)
    probs = torch.full((*labels.shape[:2], 7), 0.001 / 6)
    probs.scatter_(-1, classes[..., None], 0.999)
    return probs.log()


def test_powerset_loss_ignores_the_local_speaker_order() -> None:
    rng = np.random.default_rng(0)
    labels = torch.from_numpy((rng.random((4, 50, 3)) < 0.3).astype(np.float32))
    labels[labels.sum(-1) > 2] = torch.tensor([1.0, 1.0, 0.0])
    swapped = labels[..., list(PERMUTATIONS[3])]
    assert powerset_loss(_confident(swapped), labels) < 0.01
    silence = _confident(torch.zeros_like(labels))
    assert powerset_loss(silence, labels) > 1.0


def test_powerset_loss_leaves_out_three_speaker_frames() -> None:
    labels = torch.zeros(1, 10, 3)
    labels[0, :5, 0] = 1
    with_three = labels.clone()
    with_three[0, 5:] = 1  # three speakers: no powerset class
    logprobs = _confident(labels)
    assert powerset_loss(logprobs, with_three) == pytest.approx(
        float(powerset_loss(logprobs[:, :5], labels[:, :5]))
    )
    assert MAPPING.shape == (7, 3)


def _labelled_folder(folder: Path) -> None:
    """One 25 s recording in the evaluation-set layout: speaker a 2-20 s, UEM 0-25 s."""
    import soundfile as sf

    from flywheel.segments import write_rttm, write_uem

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(folder / "rec.wav", (0.05 * rng.standard_normal(25 * 16000)).astype(np.float32), 16000)
    reference = _reference([(2.0, 20.0, "a")])
    reference.uri = "rec"
    write_rttm(folder / "rec.rttm", reference)
    write_uem(folder / "rec.uem", "rec", Timeline([Segment(0.0, 25.0)]))


def test_pool_shards_are_written_whole_and_resume(smoke_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "pool"
    real = tmp_path / "reviewed"
    _labelled_folder(real)

    def build() -> list[dict]:
        return build_pool(
            out,
            hours=0.01,
            shards=2,
            data_dir=smoke_data,
            profile="smoke",
            recordings=[real],
            recordings_hop_s=5.0,
        )

    infos = build()
    assert [i["windows"] >= 1 for i in infos] == [True, True]
    assert infos[0]["recording_windows"] in (2, 3)  # 10 s windows every 5 s inside 25 s
    labels = np.load(out / "shard-000" / "labels.npy")
    audio = np.load(out / "shard-000" / "audio.npy")
    assert labels.shape[1:] == (MODEL_FRAMES, 3) and audio.shape[1:] == (WINDOW_SAMPLES,)
    assert labels.any(), "simulated conversations have speech"
    last = labels[-1]  # the recording's last window: speaker a alone, then silence after 20 s
    assert last[:, 0].any() and not last[:, 1:].any()
    (out / "shard-001" / "info.json").unlink()
    again = build()
    assert again[0] == json.loads((out / "shard-000" / "info.json").read_text())
    assert again[1]["conversations"] == infos[1]["conversations"]


@pytest.mark.skipif(
    not Path(__file__).resolve().parents[2].joinpath(".venv-teacher/bin/python").exists(),
    reason=".venv-teacher missing: run `bash scripts/setup_teacher.sh`",
)
def test_fine_tuning_resumes_and_exports_a_self_describing_onnx(smoke_data: Path, tmp_path: Path) -> None:
    import subprocess

    from flywheel.config import REPO_ROOT
    from flywheel.systems.external import TEACHER_PYTHON
    from flywheel.systems.teacher import TeacherBackend, onnx_metadata

    pool = tmp_path / "pool"
    build_pool(pool, hours=0.01, shards=1, data_dir=smoke_data, profile="smoke")
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "PYANNOTE_METRICS_ENABLED": "false"}

    def teacher_python(*args: str) -> str:
        proc = subprocess.run(
            [str(TEACHER_PYTHON), *(args if args[0] == "-c" else ("-m", *args))],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=env,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    run = tmp_path / "run"
    common = [
        "--pool",
        str(pool),
        "--out",
        str(run),
        "--batch-size",
        "2",
        "--save-every",
        "2",
        "--threads",
        "1",
    ]
    teacher_python("training.segmentation_finetune", *common, "--steps", "2")
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 2
    assert "resumed at step 2" in teacher_python("training.segmentation_finetune", *common, "--steps", "3")
    teacher_python(
        "training.teacher_export",
        "--segmentation-weights",
        str(run / "last.pt"),
        "--out",
        str(tmp_path),
        "--segmentation-name",
        "seg-ft.onnx",
    )
    backend = TeacherBackend(tmp_path / "seg-ft.onnx", threads=1)
    meta = onnx_metadata(backend.segmentation)
    assert meta["model_type"] == "segmentation-3.0-finetuned" and meta["extra"]["finetuned"]["step"] == 3
    assert meta["extra"]["parity_max_probability_diff"] < 1e-3
    logprobs, _ = backend(np.load(pool / "shard-000" / "audio.npy")[:1].astype(np.float32) / 32767)
    assert np.allclose(np.exp(logprobs).sum(-1), 1.0, atol=1e-3)

    anchored = tmp_path / "anchored"
    options = ["--anchor-weight", "1.0", "--freeze-sincnet", "--steps", "2"]
    teacher_python(
        "training.segmentation_finetune", *common[:2], "--out", str(anchored), *common[4:], *options
    )
    moved = teacher_python(
        "-c",
        "import json, torch\n"
        "from training.teacher_export import load_segmentation\n"
        f"tuned = torch.load('{anchored / 'last.pt'}', weights_only=False)['model']\n"
        "base = load_segmentation().state_dict()\n"
        "print(json.dumps({k: float((tuned[k] - base[k]).abs().max()) for k in base}))",
    )
    change = json.loads(moved.strip().splitlines()[-1])
    assert all(v == 0.0 for k, v in change.items() if k.startswith("sincnet.")), "SincNet stays pretrained"
    assert any(v > 0.0 for k, v in change.items() if k.startswith("lstm.")), "the rest is trained"
