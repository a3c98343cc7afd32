"""Resemblyzer d-vectors (GE2E speaker encoder) from the weights in the ``resemblyzer`` wheel.

Only ``resemblyzer/pretrained.pt`` (Apache-2.0) is used; its Python modules need librosa and
webrtcvad, so the front-end is reproduced here in numpy, matching ``resemblyzer.audio``:

* ``librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40)``: periodic Hann
  window of 25 ms, 10 ms hop, centred frames, power spectrum, Slaney mel filterbank (area
  normalised), **no log**;
* the network: 3-layer LSTM(40 -> 256), last hidden state of the top layer, Linear(256 -> 256),
  ReLU, L2 normalisation;
* input level: resemblyzer's ``preprocess_wav`` raises quiet audio to -30 dBFS (increase only);
  here that is done per window (``normalize_dbfs``) or with a caller-supplied gain.

A window ``(start, end)`` becomes the mel frames centred at ``start, start + 10 ms, ...`` (resemblyzer
slices its partial utterances the same way: 160 frames = 1.6 s), computed from the real neighbouring
samples; samples outside the waveform are zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from flywheel.vad import package_file

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
HIDDEN = 256
EMBEDDING_DIM = 256
N_LAYERS = 3
PARTIAL_FRAMES = 160  # resemblyzer's partial utterance: 1.6 s
INT16_MAX = 2**15 - 1


def default_weights_path() -> Path:
    """The pretrained encoder shipped in the ``resemblyzer`` wheel."""
    return package_file("resemblyzer", "pretrained.pt")


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa ``htk=False``): linear below 1 kHz, logarithmic above."""
    freqs = np.asarray(freqs, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(
        freqs >= min_log_hz,
        min_log_mel + np.log(np.maximum(freqs, min_log_hz) / min_log_hz) / logstep,
        freqs / f_sp,
    )


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def mel_filterbank(
    sr: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Same as ``librosa.filters.mel(sr, n_fft, n_mels, norm="slaney")``: ``(n_mels, 1 + n_fft // 2)``."""
    fmax = sr / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:n_mels] / fdiff[:n_mels, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


_HANN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic
_MEL = mel_filterbank()


def mel_frames(waveform: np.ndarray, first_frame: int, n_frames: int, gain: float = 1.0) -> np.ndarray:
    """Mel power spectrogram ``(n_frames, 40)`` from frame ``first_frame`` (frame k centred at ``160 k``)."""
    lo = first_frame * HOP - N_FFT // 2
    hi = (first_frame + n_frames - 1) * HOP + N_FFT // 2
    seg = np.zeros(hi - lo, dtype=np.float32)
    a, b = max(lo, 0), min(hi, waveform.size)
    if b > a:
        seg[a - lo : b - lo] = waveform[a:b]
    if gain != 1.0:
        seg *= gain
    frames = np.lib.stride_tricks.sliding_window_view(seg, N_FFT)[::HOP][:n_frames]
    spec = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2
    return (spec.astype(np.float32) @ _MEL.T).astype(np.float32)


def volume_gain(samples: np.ndarray, target_dbfs: float = -30.0) -> float:
    """Gain that raises ``samples`` to ``target_dbfs`` RMS (never lowers it; 1.0 for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return gain_for_rms(rms, target_dbfs)


def gain_for_rms(rms: float, target_dbfs: float = -30.0) -> float:
    """Gain that raises a signal of RMS ``rms`` (full scale 1.0) to ``target_dbfs``, never lowering it."""
    if rms <= 1e-6:
        return 1.0
    change_db = target_dbfs - 20 * np.log10(rms)
    return float(10 ** (change_db / 20)) if change_db > 0 else 1.0


class VoiceEncoderNet(nn.Module):
    """Resemblyzer's ``VoiceEncoder`` network: LSTM(40, 256, 3 layers) -> Linear -> ReLU -> L2 norm."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, N_LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING_DIM)
        self.relu = nn.ReLU()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, 40)`` mel power spectrograms -> ``(batch, 256)`` unit-norm embeddings."""
        _, (hidden, _) = self.lstm(mels)
        raw = self.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)


class ResemblyzerEncoder:
    """Speaker embeddings of time windows of a 16 kHz waveform.

    Args:
        weights_path: resemblyzer checkpoint (default: the wheel's ``pretrained.pt``).
        batch_size: windows per forward pass (bounds memory on long audio).
        num_threads: ``torch.set_num_threads`` value, or ``None`` to leave torch's setting alone
            (note: it is process-wide).
        normalize_dbfs: raise each window to this RMS level like resemblyzer's ``preprocess_wav``
            (increase only); ``None`` disables it (a caller-supplied ``gain`` still applies).
    """

    dim = EMBEDDING_DIM

    def __init__(
        self,
        weights_path: str | Path | None = None,
        batch_size: int = 64,
        num_threads: int | None = 1,
        normalize_dbfs: float | None = None,
    ) -> None:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.batch_size = batch_size
        self.normalize_dbfs = normalize_dbfs
        self.weights_path = Path(weights_path) if weights_path else default_weights_path()
        checkpoint = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        state = checkpoint.get("model_state", checkpoint)
        self.net = VoiceEncoderNet()
        # the checkpoint also holds GE2E's similarity_weight/bias (training only)
        missing, _ = self.net.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"{self.weights_path}: missing weights {missing}")
        self.net.eval()

    @torch.inference_mode()
    def embed_mels(self, mels: np.ndarray) -> np.ndarray:
        """``(batch, frames, 40)`` mel spectrograms -> ``(batch, 256)`` L2-normalised float32 embeddings."""
        return self.net(torch.from_numpy(np.ascontiguousarray(mels, dtype=np.float32))).numpy()

    def embed_windows(
        self, waveform: np.ndarray, windows: Sequence[tuple[float, float]], gain: float = 1.0
    ) -> np.ndarray:
        """Embed each ``(start_s, end_s)`` window of ``waveform``: ``(n, 256)``, L2-normalised.

        Windows may have any length (at least one 10 ms frame); windows of equal length are batched.
        Memory is bounded by ``batch_size`` windows, whatever the number of windows.
        """
        wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
        out = np.zeros((len(windows), EMBEDDING_DIM), dtype=np.float32)
        if not len(windows):
            return out
        starts = np.array([round(s * SAMPLE_RATE / HOP) for s, _ in windows], dtype=np.int64)
        lengths = np.array([max(1, round((e - s) * SAMPLE_RATE / HOP)) for s, e in windows], dtype=np.int64)
        for n_frames in np.unique(lengths):
            idx = np.flatnonzero(lengths == n_frames)
            for b in range(0, idx.size, self.batch_size):
                batch = idx[b : b + self.batch_size]
                mels = np.stack([self._window_mel(wav, int(starts[i]), int(n_frames), gain) for i in batch])
                out[batch] = self.embed_mels(mels)
        return out

    def _window_mel(self, wav: np.ndarray, first_frame: int, n_frames: int, gain: float) -> np.ndarray:
        if self.normalize_dbfs is not None:
            lo = max(first_frame * HOP, 0)
            hi = min((first_frame + n_frames) * HOP, wav.size)
            gain = gain * volume_gain(wav[lo:hi] * gain, self.normalize_dbfs)
        return mel_frames(wav, first_frame, n_frames, gain)
