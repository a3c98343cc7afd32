"""The teacher (segmentation-3.0 + CAM++, ONNX) and its pieces, on real voices.

The ONNX files and the teacher environment come from ``scripts/setup_teacher.sh`` (run by the
README's set-up); tests that need them skip with that hint when they are missing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

from flywheel.config import REPO_ROOT, get_settings
from flywheel.kaldi_fbank import kaldi_fbank, num_fbank_frames
from flywheel.pretrained import CAMPPLUS_ONNX, SEGMENTATION_ONNX
from flywheel.systems.external import TEACHER_PYTHON
from flywheel.systems.teacher import TeacherBackend, window_spans

needs_onnx = pytest.mark.skipif(
    not (SEGMENTATION_ONNX.exists() and CAMPPLUS_ONNX.exists()),
    reason="models/teacher/*.onnx missing: run `bash scripts/setup_teacher.sh`",
)
needs_teacher_env = pytest.mark.skipif(
    not TEACHER_PYTHON.exists(), reason=".venv-teacher missing: run `bash scripts/setup_teacher.sh`"
)


def librispeech_files(n: int) -> list[Path]:
    root = get_settings().shared_data_dir / "librispeech-251"
    files = sorted(root.rglob("*.flac"))
    if len(files) < n:
        pytest.fail(f"{root} holds {len(files)} LibriSpeech files; set FLYWHEEL_SHARED_DATA_DIR")
    return files[:n]


def read(path: Path) -> np.ndarray:
    import soundfile as sf

    samples, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return samples


def run_teacher_python(code: str) -> dict:
    """Run ``code`` in the teacher environment; it prints one JSON line, returned parsed."""
    proc = subprocess.run(
        [str(TEACHER_PYTHON), "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PYANNOTE_METRICS_ENABLED": "false", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_window_spans_cover_solo_runs() -> None:
    solo = np.zeros(1000, dtype=bool)
    solo[10:40] = True  # 30 frames: shorter than a window, one window
    solo[100:420] = True  # 320 frames: windows of 150 every 75, the last ending at 420
    solo[500:510] = True  # too short
    spans = window_spans(solo, window=150, step=75, min_len=20)
    assert spans[0] == (10, 40)
    assert spans[1:] == [(100, 250), (175, 325), (250, 400), (270, 420)]


def test_fbank_frame_count_is_kaldis() -> None:
    assert num_fbank_frames(399) == 0
    assert num_fbank_frames(400) == 1
    assert num_fbank_frames(16000) == 98
    assert kaldi_fbank(np.zeros(16000, dtype=np.float32)).shape == (98, 80)


@needs_teacher_env
def test_kaldi_fbank_matches_torchaudio() -> None:
    wav = librispeech_files(1)[0]
    out = run_teacher_python(
        "import json, numpy as np, soundfile as sf, torch\n"
        "from torchaudio.compliance import kaldi\n"
        "from flywheel.kaldi_fbank import kaldi_fbank\n"
        f"w, _ = sf.read('{wav}', dtype='float32'); w = w[:64000]\n"
        "ref = kaldi.fbank(torch.from_numpy(w)[None], num_mel_bins=80, dither=0.0).numpy()\n"
        "ours = kaldi_fbank(w, block_frames=100)\n"
        "print(json.dumps({'shape': list(ours.shape), 'ref_shape': list(ref.shape),"
        " 'diff': float(np.abs(ours - ref).max())}))"
    )
    assert out["shape"] == out["ref_shape"] == [398, 80]
    assert out["diff"] < 1e-2


@needs_onnx
def test_backend_shapes_and_metadata() -> None:
    backend = TeacherBackend()
    assert backend.chunk_s == 10.0 and backend.num_frames == 593 and backend.dimension == 192
    chunks = np.stack(
        [np.zeros(160000, np.float32), np.pad(read(librispeech_files(1)[0]), (0, 160000))[:160000]]
    )
    logprobs, embeddings = backend(chunks)
    assert logprobs.shape == (2, 593, 7) and embeddings.shape == (2, 3, 192)
    probs = np.exp(logprobs).sum(axis=-1)
    assert np.allclose(probs, 1.0, atol=1e-3)
    assert not embeddings[0].any(), "silence has no local speaker to embed"
    assert np.linalg.norm(embeddings[1], axis=1).max() > 0, "one LibriSpeech speaker is embedded"


@needs_onnx
def test_campplus_puts_one_real_speaker_closer_than_two() -> None:
    backend = TeacherBackend()
    halves = []
    for path in librispeech_files(6):
        w = read(path)
        h = len(w) // 2
        halves.append([backend.embed(kaldi_fbank(w[:h])), backend.embed(kaldi_fbank(w[h:]))])
    e = np.array(halves)
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    same = np.sum(e[:, 0] * e[:, 1], axis=-1)
    cross = e[:, 0] @ e[:, 1].T
    different = cross[~np.eye(len(e), dtype=bool)]
    assert same.min() > different.max(), (same, different.max())


@needs_teacher_env
@needs_onnx
def test_onnx_exports_match_torch_on_real_speech() -> None:
    wav = librispeech_files(1)[0]
    out = run_teacher_python(
        "import json, numpy as np, soundfile as sf, torch, onnxruntime as ort\n"
        "from training.teacher_export import _Segmentation, load_segmentation, load_campplus\n"
        "from flywheel.kaldi_fbank import kaldi_fbank\n"
        f"w, _ = sf.read('{wav}', dtype='float32'); x = np.pad(w, (0, 160000))[:160000][None]\n"
        "cpu = ['CPUExecutionProvider']\n"
        "seg = ort.InferenceSession('models/teacher/segmentation-3.0.onnx', providers=cpu)\n"
        "cam = ort.InferenceSession('models/teacher/campplus.onnx', providers=cpu)\n"
        "with torch.no_grad():\n"
        "    ref = _Segmentation(load_segmentation())(torch.from_numpy(x)).numpy()\n"
        "    f = kaldi_fbank(w); f = (f - f.mean(0))[None]\n"
        "    eref = load_campplus()(torch.from_numpy(f)).numpy()[0]\n"
        "got = seg.run(None, {'waveform': x})[0]\n"
        "e = cam.run(None, {'fbank': f})[0][0]\n"
        "print(json.dumps({'prob_diff': float(np.abs(np.exp(got) - np.exp(ref)).max()),"
        " 'argmax_agree': float((got.argmax(-1) == ref.argmax(-1)).mean()),"
        " 'cosine': float(e @ eref / np.linalg.norm(e) / np.linalg.norm(eref))}))"
    )
    assert out["prob_diff"] < 1e-3 and out["argmax_agree"] == 1.0
    assert out["cosine"] > 0.9999


@pytest.fixture(scope="module")
def real_conversation(smoke_data: Path) -> tuple[np.ndarray, Annotation]:
    """A 30-40 s conversation of two real LibriSpeech voices with the real-set acoustics."""
    from pipelines.build_real_sets import simulate_real
    from pipelines.inventory import Inventory
    from pipelines.real_acoustics import RealRecipe
    from pipelines.simulate import AudioCache, SimulationConfig

    inventory = Inventory.load(smoke_data / "inventory" / "smoke")
    pool = {s: [u for u in us if u.speech] for s, us in inventory.by_speaker("train").items()}
    pool = {s: us for s, us in pool.items() if s.startswith("libri:") and us}
    cfg = SimulationConfig(speakers=(2, 2), duration_s=(30.0, 40.0), overlap_turn_prob=0.2)
    recipe = RealRecipe(rt60_s=(0.2, 0.3), distance=(0.1, 0.3), snr_db=(20.0, 25.0), vorbis_prob=0.0)
    waveform, reference, info = simulate_real(pool, 3, cfg, recipe, AudioCache(inventory), "real_conv")
    assert len(info["speakers"]) == 2
    return waveform, reference


@needs_onnx
def test_teacher_finds_both_real_speakers(real_conversation: tuple[np.ndarray, Annotation]) -> None:
    from flywheel.systems import get_system

    waveform, reference = real_conversation
    hypothesis = get_system("teacher").diarize(waveform, uri="real_conv")
    assert len(hypothesis.labels()) == 2
    uem = Segment(0, len(waveform) / 16000)
    der = DiarizationErrorRate()(reference, hypothesis, uem=uem)
    assert der < 0.25, der


@needs_teacher_env
@pytest.mark.slow
@pytest.mark.parametrize("name", ["senko", "pyannote"])
def test_peers_diarize_in_the_teacher_environment(
    name: str, real_conversation: tuple[np.ndarray, Annotation]
) -> None:
    from flywheel.systems import get_system

    waveform, reference = real_conversation
    from flywheel.systems.external import ILLEGAL_INSTRUCTION, PeerError

    system = get_system(name)
    try:
        hypothesis = system.diarize(waveform, uri="real_conv")
    except PeerError as exc:
        if ILLEGAL_INSTRUCTION not in str(exc):
            raise
        pytest.skip(f"SKIPPED LOUDLY: {name} cannot run on this CPU (no AVX-512?): {exc}")
    finally:
        system.close()
    assert hypothesis.labels(), f"{name} found no speaker"
    uem = Segment(0, len(waveform) / 16000)
    assert DiarizationErrorRate()(reference, hypothesis, uem=uem) < 0.5


def test_vote_assignment_follows_the_windows_and_keeps_slots_apart() -> None:
    from flywheel.systems.neural import LocalResults
    from flywheel.systems.teacher import vote_assignment

    activity = np.zeros((2, 10, 3), dtype=np.uint8)
    activity[0, 0:5, 0] = 1  # chunk 0: slot 0 speaks frames 0-4, slot 1 frames 5-9
    activity[0, 5:10, 1] = 1
    activity[1, 0:10, 2] = 1  # chunk 1 (frames 10-19): slot 2 only, inside a window of cluster 0
    local = LocalResults(
        activity=activity,
        embeddings=np.zeros((2, 3, 4), np.float32),
        single_frames=activity.sum(axis=1),
        chunk_frames=np.array([0, 10]),
        num_frames=20,
        duration=2.0,
    )
    windows = np.array([[0, 5], [5, 10], [12, 18]])
    labels = np.array([1, 0, 0])
    active = activity.sum(axis=1) > 0
    assignment = vote_assignment(local, active, windows, labels, k=2)
    assert assignment[0].tolist() == [1, 0, -1]
    assert assignment[1].tolist() == [-1, -1, 0]


@needs_onnx
def test_solo_override_uses_the_window_labels_of_the_assignment_it_is_given() -> None:
    """The override reads the labels that travel with the assignment, never state left on the
    prepared recording by an earlier ``assign``: without labels the arms' stitching is what comes out."""
    import dataclasses

    from flywheel.systems import get_system
    from flywheel.systems.neural import SpeakerAssignment
    from flywheel.systems.teacher import TeacherLocal

    system = get_system("teacher")
    system.params = dataclasses.replace(system.params, smoothing_s=0.0, stitching="hard")
    activity = np.zeros((1, 40, 3), dtype=np.uint8)
    activity[0, :, 0] = 1  # one local speaker throughout (a slot that drifts between two voices)
    local = TeacherLocal(
        activity=activity,
        embeddings=np.zeros((1, 3, 4), np.float32),
        single_frames=activity.sum(axis=1),
        chunk_frames=np.array([0]),
        num_frames=40,
        duration=40 * system.frame_s,
        window_frames=np.array([[0, 20], [20, 40]]),
        window_embeddings=np.zeros((2, 4), np.float32),
    )
    slots = np.array([[0, -1, -1]])
    plain = system.stitched_frames(local, SpeakerAssignment(slots, 2))
    assert plain[:, 0].all() and not plain[:, 1].any()
    voted = system.stitched_frames(local, SpeakerAssignment(slots, 2, np.array([0, 1])))
    assert voted[:20, 0].all() and voted[20:, 1].all() and not voted[20:, 0].any()
    assert system.stitched_frames(local, SpeakerAssignment(slots, 2)).tolist() == plain.tolist()
