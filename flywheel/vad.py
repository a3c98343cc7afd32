"""Voice activity detection with the pretrained Silero VAD (v5/v6) ONNX model.

The model ships in the ``silero-vad`` wheel (``silero_vad/data/silero_vad.onnx``, MIT licence). Only
the weight file is used: the package's Python modules import torch/torchaudio helpers we do not need,
so the streaming logic of its ``OnnxWrapper`` is reproduced here with numpy + onnxruntime:

* 16 kHz audio is cut into 512-sample frames (32 ms); the last frame is zero-padded;
* each frame is prefixed with the last 64 samples of the previous frame (zeros before the first one),
  so the model sees 576 samples per call;
* the recurrent state ``(2, 1, 128)`` is carried from call to call.

Memory stays bounded for long audio: one frame is processed at a time and only the per-frame
probabilities (one float per 32 ms) are kept.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
FRAME_SAMPLES = 512  # 32 ms at 16 kHz
CONTEXT_SAMPLES = 64
STATE_SHAPE = (2, 1, 128)
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE

Region = tuple[float, float]


def package_file(package: str, *parts: str) -> Path:
    """Path of a file shipped inside an installed package, without importing (executing) the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{package} does not ship {'/'.join(parts)} (looked at {path})")
    return path


def default_model_path() -> Path:
    """The ONNX weights shipped in the ``silero-vad`` wheel."""
    return package_file("silero_vad", "data", "silero_vad.onnx")


def regions_from_probabilities(
    probabilities: np.ndarray,
    n_samples: int,
    *,
    threshold: float = 0.5,
    neg_threshold: float | None = None,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.1,
    pad_s: float = 0.03,
    sample_rate: int = SAMPLE_RATE,
) -> list[Region]:
    """Turn per-frame speech probabilities into speech regions (seconds), Silero-style.

    Hysteresis: speech starts on a frame with probability ``>= threshold`` and ends only after
    ``min_silence_s`` of frames below ``neg_threshold`` (default ``threshold - 0.15``); frames
    in between keep the current state. Regions shorter than ``min_speech_s`` are dropped; the
    remaining ones are padded by ``pad_s`` on each side (halving the gap when two regions would touch).

    Args:
        probabilities: one speech probability per 512-sample frame.
        n_samples: length of the audio in samples (the end of a region still open at the end).
    """
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)
    min_speech = sample_rate * min_speech_s
    min_silence = sample_rate * min_silence_s
    pad = int(sample_rate * pad_s)

    spans: list[list[int]] = []
    triggered = False
    start = 0
    temp_end = 0
    for i, prob in enumerate(np.asarray(probabilities, dtype=np.float32).tolist()):
        cur = FRAME_SAMPLES * i
        if prob >= threshold:
            temp_end = 0
            if not triggered:
                triggered, start = True, cur
            continue
        if triggered and prob < neg_threshold:
            if not temp_end:
                temp_end = cur
            if cur - temp_end >= min_silence:
                if temp_end - start > min_speech:
                    spans.append([start, temp_end])
                triggered, temp_end = False, 0
    if triggered and n_samples - start > min_speech:
        spans.append([start, n_samples])

    for i, span in enumerate(spans):
        if i == 0:
            span[0] = max(0, span[0] - pad)
        if i < len(spans) - 1:
            gap = spans[i + 1][0] - span[1]
            if gap < 2 * pad:
                span[1] += gap // 2
                spans[i + 1][0] = max(0, spans[i + 1][0] - gap // 2)
            else:
                span[1] = min(n_samples, span[1] + pad)
                spans[i + 1][0] = max(0, spans[i + 1][0] - pad)
        else:
            span[1] = min(n_samples, span[1] + pad)
    return [(s / sample_rate, e / sample_rate) for s, e in spans]


class SileroVAD:
    """Silero VAD on 16 kHz mono float32 audio, run with onnxruntime on the CPU.

    Args:
        model_path: ONNX file (default: the one in the ``silero-vad`` wheel).
        num_threads: onnxruntime intra-op threads (1 is fastest for this tiny model).
    """

    def __init__(self, model_path: str | Path | None = None, num_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def speech_probabilities(self, waveform: np.ndarray) -> np.ndarray:
        """One speech probability per 32 ms frame (``ceil(len / 512)`` values, float32)."""
        wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
        n_frames = -(-wav.size // FRAME_SAMPLES)
        probs = np.empty(n_frames, dtype=np.float32)
        state = np.zeros(STATE_SHAPE, dtype=np.float32)
        sr = np.array(SAMPLE_RATE, dtype=np.int64)
        buf = np.zeros((1, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        run = self.session.run
        for i in range(n_frames):
            # context <- last 64 samples of the previous (padded) frame
            buf[0, :CONTEXT_SAMPLES] = buf[0, -CONTEXT_SAMPLES:]
            frame = wav[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            buf[0, CONTEXT_SAMPLES : CONTEXT_SAMPLES + frame.size] = frame
            if frame.size < FRAME_SAMPLES:
                buf[0, CONTEXT_SAMPLES + frame.size :] = 0.0
            out, state = run(None, {"input": buf, "state": state, "sr": sr})
            probs[i] = out[0, 0]
        return probs

    def speech_regions(
        self,
        waveform: np.ndarray,
        threshold: float = 0.5,
        min_speech_s: float = 0.25,
        min_silence_s: float = 0.1,
        pad_s: float = 0.03,
        neg_threshold: float | None = None,
    ) -> list[Region]:
        """Speech regions ``(start_s, end_s)`` of ``waveform``; see :func:`regions_from_probabilities`."""
        probs = self.speech_probabilities(waveform)
        return regions_from_probabilities(
            probs,
            int(np.asarray(waveform).size),
            threshold=threshold,
            neg_threshold=neg_threshold,
            min_speech_s=min_speech_s,
            min_silence_s=min_silence_s,
            pad_s=pad_s,
        )
